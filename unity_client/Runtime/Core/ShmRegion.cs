// A shared-memory region the daemon and the client both map: on Linux/macOS a file under
// /dev/shm (or any tmpfs path) opened with MemoryMappedFile.CreateFromFile, because named maps
// throw there; on Windows a named file mapping. Copies go through Marshal.Copy on the view's
// base pointer, so the core needs no unsafe code.
using System;
using System.IO;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Neurender.Core
{
    public sealed class ShmRegion : IDisposable
    {
        public readonly string Name;
        public readonly long Size;
        MemoryMappedFile _file;
        MemoryMappedViewAccessor _view;
        IntPtr _base;
        bool _acquired;

        static bool IsWindows => Environment.OSVersion.Platform == PlatformID.Win32NT;

        ShmRegion(string name, long size, MemoryMappedFile file)
        {
            Name = name;
            Size = size;
            _file = file;
            _view = file.CreateViewAccessor(0, size, MemoryMappedFileAccess.ReadWrite);
            var handle = _view.SafeMemoryMappedViewHandle;
            handle.DangerousAddRef(ref _acquired);
            _base = handle.DangerousGetHandle() + (int)_view.PointerOffset;
        }

        /// <summary>Maps an existing region of at least `size` bytes: a file (the daemon's session
        /// memory, /proc/PID/fd/N; any file on any OS) or, on Windows, a named mapping.</summary>
        public static ShmRegion Open(string name, long size)
        {
            if (size <= 0) throw new ArgumentOutOfRangeException(nameof(size));
            if (IsWindows && !File.Exists(name))
                return new ShmRegion(name, size, MemoryMappedFile.OpenExisting(name, MemoryMappedFileRights.ReadWrite));
            // throws FileNotFoundException when it is gone
            var fs = new FileStream(name, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
            // the open file's size: FileInfo would give a /proc fd link's own size (64)
            long actual = fs.Length;
            if (actual < size)
            {
                fs.Dispose();
                throw new IOException($"shared memory {name} holds {actual} bytes, {size} expected");
            }
            return new ShmRegion(name, size, MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, false));
        }

        /// <summary>Creates (or truncates) a region the client owns; Unlink removes it.</summary>
        public static ShmRegion Create(string name, long size)
        {
            if (size <= 0) throw new ArgumentOutOfRangeException(nameof(size));
            if (IsWindows) return new ShmRegion(name, size, MemoryMappedFile.CreateNew(name, size, MemoryMappedFileAccess.ReadWrite));
            var fs = new FileStream(name, FileMode.Create, FileAccess.ReadWrite, FileShare.ReadWrite);
            fs.SetLength(size);
            return new ShmRegion(name, size, MemoryMappedFile.CreateFromFile(fs, null, size, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, false));
        }

        void Check(long offset, int count)
        {
            if (_view == null) throw new ObjectDisposedException(Name);
            if (offset < 0 || count < 0 || offset + count > Size)
                throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset + count}) is outside the {Size}-byte region {Name}");
        }

        public void Write(long offset, byte[] src, int srcOffset, int count)
        {
            Check(offset, count);
            Marshal.Copy(src, srcOffset, _base + checked((int)offset), count);
        }

        public void Read(long offset, byte[] dst, int dstOffset, int count)
        {
            Check(offset, count);
            Marshal.Copy(_base + checked((int)offset), dst, dstOffset, count);
        }

        /// <summary>The mapped address of `offset`, for callers that copy with their own native
        /// routine (Unity's UnsafeUtility.MemCpy from an AsyncGPUReadback buffer).</summary>
        public IntPtr Pointer(long offset, int count)
        {
            Check(offset, count);
            return _base + checked((int)offset);
        }

        public void Dispose()
        {
            if (_view == null) return;
            if (_acquired) _view.SafeMemoryMappedViewHandle.DangerousRelease();
            _view.Dispose();
            _file.Dispose();
            _view = null;
            _file = null;
            _base = IntPtr.Zero;
        }

        /// <summary>Removes the backing file (Linux/macOS); on Windows the map dies with its last handle.</summary>
        public static void Unlink(string name)
        {
            if (!IsWindows && File.Exists(name)) File.Delete(name);
        }
    }
}
