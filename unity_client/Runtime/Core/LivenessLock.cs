// The client's half of the daemon's death detection (docs/protocol.md, `open.lock`): hold a
// shared flock on the session's lock file for as long as this process lives. The kernel drops it
// when the process dies, however it dies, and the daemon sees that at once. flock (not fcntl
// locks, which is what FileStream.Lock uses on mono) because that is what the daemon probes.
using System;
using System.Runtime.InteropServices;

namespace Neurender.Core
{
    public sealed class LivenessLock : IDisposable
    {
        const int O_RDONLY = 0;
        const int LOCK_SH = 1;
        const int LOCK_NB = 4;

        [DllImport("libc", SetLastError = true)] static extern int open([MarshalAs(UnmanagedType.LPStr)] string path, int flags);
        [DllImport("libc", SetLastError = true)] static extern int flock(int fd, int operation);
        [DllImport("libc", SetLastError = true)] static extern int close(int fd);
        [DllImport("libc")] static extern int getpid();
        [DllImport("libc")] static extern uint getuid();

        int _fd = -1;

        /// <summary>True where flock is reachable (Linux, macOS); Windows clients rely on heartbeats.</summary>
        public static bool Supported
        {
            get
            {
                if (Environment.OSVersion.Platform == PlatformID.Win32NT) return false;
                try { getpid(); return true; }
                catch (DllNotFoundException) { return false; }
                catch (EntryPointNotFoundException) { return false; }
            }
        }

        /// <summary>The user id, for the default runtime dir /tmp/neurender-&lt;uid&gt;.</summary>
        public static uint UserId() => getuid();

        public LivenessLock(string path)
        {
            _fd = open(path, O_RDONLY);
            if (_fd < 0) throw new NeurenderException($"cannot open lock file {path} (errno {Marshal.GetLastWin32Error()})");
            if (flock(_fd, LOCK_SH | LOCK_NB) != 0)
            {
                int errno = Marshal.GetLastWin32Error();
                close(_fd);
                _fd = -1;
                throw new NeurenderException($"cannot flock {path} (errno {errno})");
            }
        }

        public void Dispose()
        {
            if (_fd < 0) return;
            close(_fd); // closing the last descriptor releases the flock
            _fd = -1;
        }
    }
}
