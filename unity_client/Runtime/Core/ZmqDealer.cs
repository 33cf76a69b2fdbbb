// One ZeroMQ DEALER socket over the native libzmq: multipart send, multipart receive with a
// timeout (zmq_poll), CURVE client keys, heartbeats. Not thread-safe, like every zmq socket: the
// client keeps all socket calls on one thread.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace Neurender.Core
{
    /// <summary>A libzmq call failed; Errno is zmq_errno() at that moment.</summary>
    public sealed class ZmqException : Exception
    {
        public readonly int Errno;
        public ZmqException(string what, int errno, string detail) : base($"{what}: {detail} (errno {errno})") { Errno = errno; }

        internal static ZmqException Last(string what)
        {
            int errno;
            string detail = ZmqNative.LastError(out errno);
            return new ZmqException(what, errno, detail);
        }
    }

    /// <summary>Owns a zmq context. One per client; disposing it closes nothing else, so dispose
    /// sockets first.</summary>
    public sealed class ZmqContext : IDisposable
    {
        internal IntPtr Handle { get; private set; }

        public ZmqContext()
        {
            Handle = ZmqNative.zmq_ctx_new();
            if (Handle == IntPtr.Zero) throw ZmqException.Last("zmq_ctx_new");
        }

        public static string Version
        {
            get { int a, b, c; ZmqNative.zmq_version(out a, out b, out c); return $"{a}.{b}.{c}"; }
        }

        public static bool HasCurve => ZmqNative.zmq_has("curve") == 1;

        public void Dispose()
        {
            if (Handle == IntPtr.Zero) return;
            ZmqNative.zmq_ctx_term(Handle);
            Handle = IntPtr.Zero;
        }
    }

    /// <summary>CURVE keys for a TCP connection, Z85-encoded (40 characters each).</summary>
    public sealed class CurveKeys
    {
        public string ServerPublic, ClientPublic, ClientSecret;

        public static CurveKeys Generate(string serverPublic)
        {
            var pub = new byte[41];
            var sec = new byte[41];
            if (ZmqNative.zmq_curve_keypair(pub, sec) != 0) throw ZmqException.Last("zmq_curve_keypair");
            return new CurveKeys { ServerPublic = serverPublic, ClientPublic = Encoding.ASCII.GetString(pub, 0, 40), ClientSecret = Encoding.ASCII.GetString(sec, 0, 40) };
        }
    }

    public sealed class ZmqDealer : IDisposable
    {
        IntPtr _socket;
        readonly IntPtr _msg = Marshal.AllocHGlobal(ZmqNative.MsgSize);
        static readonly bool IsWindows = Environment.OSVersion.Platform == PlatformID.Win32NT;

        public ZmqDealer(ZmqContext ctx)
        {
            _socket = ZmqNative.zmq_socket(ctx.Handle, ZmqNative.DEALER);
            if (_socket == IntPtr.Zero) throw ZmqException.Last("zmq_socket");
            SetInt(ZmqNative.LINGER, 0); // never block Unity's quit (or a test's exit) on unsent frames
        }

        public void SetInt(int option, int value)
        {
            if (ZmqNative.zmq_setsockopt(_socket, option, ref value, (UIntPtr)4) != 0) throw ZmqException.Last("zmq_setsockopt " + option);
        }

        public void SetBytes(int option, byte[] value)
        {
            if (ZmqNative.zmq_setsockopt(_socket, option, value, (UIntPtr)value.Length) != 0) throw ZmqException.Last("zmq_setsockopt " + option);
        }

        /// <summary>ZMTP heartbeats: a PING every intervalMs; the peer is dropped when no traffic
        /// arrives for timeoutMs.</summary>
        public void SetHeartbeat(int intervalMs, int timeoutMs, int ttlMs)
        {
            SetInt(ZmqNative.HEARTBEAT_IVL, intervalMs);
            SetInt(ZmqNative.HEARTBEAT_TIMEOUT, timeoutMs);
            SetInt(ZmqNative.HEARTBEAT_TTL, ttlMs);
        }

        /// <summary>Must be called before Connect.</summary>
        public void SetCurve(CurveKeys keys)
        {
            if (!ZmqContext.HasCurve) throw new ZmqException("CURVE", 0, "this libzmq was built without CURVE (libsodium)");
            SetBytes(ZmqNative.CURVE_SERVERKEY, Z85Key(keys.ServerPublic));
            SetBytes(ZmqNative.CURVE_PUBLICKEY, Z85Key(keys.ClientPublic));
            SetBytes(ZmqNative.CURVE_SECRETKEY, Z85Key(keys.ClientSecret));
        }

        static byte[] Z85Key(string z85)
        {
            if (z85 == null || z85.Length != 40) throw new ArgumentException("a CURVE key is 40 Z85 characters");
            // zmq_setsockopt accepts a 41-byte NUL-terminated Z85 string for CURVE keys.
            var b = new byte[41];
            Encoding.ASCII.GetBytes(z85, 0, 40, b, 0);
            return b;
        }

        public void Connect(string endpoint)
        {
            if (ZmqNative.zmq_connect(_socket, endpoint) != 0) throw ZmqException.Last("zmq_connect " + endpoint);
        }

        /// <summary>Sends all frames as one multipart message. Returns false if the message
        /// could not be queued within timeoutMs (no peer connected, or its queue is full).</summary>
        public bool Send(IList<byte[]> frames, int timeoutMs)
        {
            if (frames.Count == 0) throw new ArgumentException("a message has at least one frame");
            SetInt(ZmqNative.SNDTIMEO, timeoutMs);
            for (int i = 0; i < frames.Count; i++)
            {
                byte[] f = frames[i] ?? new byte[0];
                int flags = i < frames.Count - 1 ? ZmqNative.SNDMORE : 0;
                while (true)
                {
                    if (ZmqNative.zmq_send(_socket, f, (UIntPtr)f.Length, flags) >= 0) break;
                    int errno;
                    string detail = ZmqNative.LastError(out errno);
                    if (errno == ZmqNative.EINTR) continue;
                    // Once the first frame went, libzmq guarantees the rest are accepted atomically.
                    if (ZmqNative.IsEagain(errno) && i == 0) return false;
                    throw new ZmqException("zmq_send", errno, detail);
                }
            }
            return true;
        }

        /// <summary>Waits up to timeoutMs (-1 = forever) for a message; null if none came.</summary>
        public List<byte[]> Receive(int timeoutMs)
        {
            if (!Poll(timeoutMs)) return null;
            var frames = new List<byte[]>(4);
            while (true)
            {
                if (ZmqNative.zmq_msg_init(_msg) != 0) throw ZmqException.Last("zmq_msg_init");
                try
                {
                    while ((ZmqNative.zmq_msg_recv(_msg, _socket, frames.Count == 0 ? ZmqNative.DONTWAIT : 0)) < 0)
                    {
                        int errno;
                        string detail = ZmqNative.LastError(out errno);
                        if (errno == ZmqNative.EINTR) continue;
                        if (ZmqNative.IsEagain(errno) && frames.Count == 0) return null;
                        throw new ZmqException("zmq_msg_recv", errno, detail);
                    }
                    var data = new byte[(long)(ulong)ZmqNative.zmq_msg_size(_msg)];
                    if (data.Length > 0) Marshal.Copy(ZmqNative.zmq_msg_data(_msg), data, 0, data.Length);
                    frames.Add(data);
                    if (ZmqNative.zmq_msg_more(_msg) == 0) return frames;
                }
                finally { ZmqNative.zmq_msg_close(_msg); }
            }
        }

        /// <summary>True when a message can be read within timeoutMs.</summary>
        public bool Poll(int timeoutMs)
        {
            int rc;
            if (IsWindows)
            {
                var items = new[] { new ZmqNative.PollItemWindows { socket = _socket, events = ZmqNative.POLLIN } };
                rc = ZmqNative.zmq_poll_windows(items, 1, timeoutMs);
                if (rc > 0) return (items[0].revents & ZmqNative.POLLIN) != 0;
            }
            else
            {
                var items = new[] { new ZmqNative.PollItemUnix { socket = _socket, events = ZmqNative.POLLIN } };
                rc = ZmqNative.zmq_poll_unix(items, 1, timeoutMs);
                if (rc > 0) return (items[0].revents & ZmqNative.POLLIN) != 0;
            }
            if (rc == 0) return false;
            int errno;
            string detail = ZmqNative.LastError(out errno);
            if (errno == ZmqNative.EINTR) return false;
            throw new ZmqException("zmq_poll", errno, detail);
        }

        public void Dispose()
        {
            if (_socket == IntPtr.Zero) return;
            ZmqNative.zmq_close(_socket);
            _socket = IntPtr.Zero;
            Marshal.FreeHGlobal(_msg);
        }
    }
}
