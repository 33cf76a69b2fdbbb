// P/Invoke declarations for the native libzmq (4.x C API). The library is imported as "libzmq":
// Unity resolves that to the plugin shipped per platform (Plugins/x86_64/libzmq.so, libzmq.dll,
// libzmq.dylib; see README.md); plain mono maps it with a <dllmap> in Neurender.Core.dll.config
// (Debian's libzmq5 ships only libzmq.so.5).
using System;
using System.Runtime.InteropServices;

namespace Neurender.Core
{
    internal static class ZmqNative
    {
        const string Lib = "libzmq";

        // Socket types and options, from zmq.h.
        public const int DEALER = 5;
        public const int ROUTING_ID = 5;
        public const int RCVMORE = 13;
        public const int LINGER = 17;
        public const int RECONNECT_IVL = 18;
        public const int SNDHWM = 23;
        public const int RCVHWM = 24;
        public const int RCVTIMEO = 27;
        public const int SNDTIMEO = 28;
        public const int IMMEDIATE = 39;
        public const int CURVE_SERVER = 47;
        public const int CURVE_PUBLICKEY = 48;
        public const int CURVE_SECRETKEY = 49;
        public const int CURVE_SERVERKEY = 50;
        public const int HEARTBEAT_IVL = 75;
        public const int HEARTBEAT_TTL = 76;
        public const int HEARTBEAT_TIMEOUT = 77;

        public const int DONTWAIT = 1;
        public const int SNDMORE = 2;
        public const short POLLIN = 1;
        public const short POLLOUT = 2;

        // errno values libzmq reports; EAGAIN differs between Linux (11), macOS (35) and
        // Windows (zmq uses its own, 11 as well since 4.x maps WSA errors).
        public const int EINTR = 4;
        public const int EAGAIN_LINUX = 11;
        public const int EAGAIN_MAC = 35;
        public const int ETERM = 156384712 + 53;

        // zmq_msg_t is 64 opaque bytes with pointer alignment.
        public const int MsgSize = 64;

        [StructLayout(LayoutKind.Sequential)]
        public struct PollItemUnix { public IntPtr socket; public int fd; public short events; public short revents; }

        [StructLayout(LayoutKind.Sequential)]
        public struct PollItemWindows { public IntPtr socket; public IntPtr fd; public short events; public short revents; }

        [DllImport(Lib)] public static extern void zmq_version(out int major, out int minor, out int patch);
        [DllImport(Lib)] public static extern int zmq_has([MarshalAs(UnmanagedType.LPStr)] string capability);
        [DllImport(Lib)] public static extern int zmq_errno();
        [DllImport(Lib)] public static extern IntPtr zmq_strerror(int errnum);

        [DllImport(Lib)] public static extern IntPtr zmq_ctx_new();
        [DllImport(Lib)] public static extern int zmq_ctx_term(IntPtr ctx);
        [DllImport(Lib)] public static extern int zmq_ctx_shutdown(IntPtr ctx);

        [DllImport(Lib)] public static extern IntPtr zmq_socket(IntPtr ctx, int type);
        [DllImport(Lib)] public static extern int zmq_close(IntPtr socket);
        [DllImport(Lib)] public static extern int zmq_setsockopt(IntPtr socket, int option, byte[] value, UIntPtr len);
        [DllImport(Lib)] public static extern int zmq_setsockopt(IntPtr socket, int option, ref int value, UIntPtr len);
        [DllImport(Lib)] public static extern int zmq_getsockopt(IntPtr socket, int option, ref int value, ref UIntPtr len);
        [DllImport(Lib)] public static extern int zmq_connect(IntPtr socket, [MarshalAs(UnmanagedType.LPStr)] string endpoint);
        [DllImport(Lib)] public static extern int zmq_disconnect(IntPtr socket, [MarshalAs(UnmanagedType.LPStr)] string endpoint);

        [DllImport(Lib)] public static extern int zmq_send(IntPtr socket, byte[] buf, UIntPtr len, int flags);

        [DllImport(Lib)] public static extern int zmq_msg_init(IntPtr msg);
        [DllImport(Lib)] public static extern int zmq_msg_recv(IntPtr msg, IntPtr socket, int flags);
        [DllImport(Lib)] public static extern int zmq_msg_close(IntPtr msg);
        [DllImport(Lib)] public static extern IntPtr zmq_msg_data(IntPtr msg);
        [DllImport(Lib)] public static extern UIntPtr zmq_msg_size(IntPtr msg);
        [DllImport(Lib)] public static extern int zmq_msg_more(IntPtr msg);

        [DllImport(Lib, EntryPoint = "zmq_poll")] public static extern int zmq_poll_unix([In, Out] PollItemUnix[] items, int n, long timeoutMs); // C long is 64-bit on LP64
        [DllImport(Lib, EntryPoint = "zmq_poll")] public static extern int zmq_poll_windows([In, Out] PollItemWindows[] items, int n, int timeoutMs); // C long is 32-bit on Windows

        [DllImport(Lib)] public static extern int zmq_z85_decode(byte[] dest, [MarshalAs(UnmanagedType.LPStr)] string str);
        [DllImport(Lib)] public static extern int zmq_curve_keypair(byte[] z85Public, byte[] z85Secret);

        public static string LastError(out int errno)
        {
            errno = zmq_errno();
            return Marshal.PtrToStringAnsi(zmq_strerror(errno));
        }

        public static bool IsEagain(int errno) => errno == EAGAIN_LINUX || errno == EAGAIN_MAC;
    }
}
