// Keeps sessions alive while the thread that owns the client is busy: Unity's main thread stalls
// for seconds when it loads a scene or compiles shaders, longer than the daemon's session timeout.
// The protocol lets pings come from a second socket (docs/protocol.md, section 3), so this thread
// has its own DEALER and never touches the client's socket (zmq sockets are single-threaded; the
// context is shared, which libzmq allows).
using System;
using System.Collections.Generic;
using System.Threading;

namespace Neurender.Core
{
    internal sealed class HeartbeatThread : IDisposable
    {
        readonly ZmqContext _ctx;
        readonly string _endpoint;
        readonly CurveKeys _curve;
        readonly int _intervalMs;
        readonly object _lock = new object();
        readonly ManualResetEvent _stop = new ManualResetEvent(false);
        readonly Thread _thread;
        string[] _sessions = new string[0];
        long _req = 1L << 40; // far from the client's own req numbers, so its replies never match theirs

        public HeartbeatThread(ZmqContext ctx, string endpoint, CurveKeys curve, int intervalMs)
        {
            _ctx = ctx;
            _endpoint = endpoint;
            _curve = curve;
            _intervalMs = Math.Max(20, intervalMs);
            _thread = new Thread(Run) { IsBackground = true, Name = "neurender heartbeat" };
            _thread.Start();
        }

        /// <summary>The session ids to keep alive (replaces the previous set).</summary>
        public void SetSessions(IList<string> ids)
        {
            var copy = new string[ids.Count];
            ids.CopyTo(copy, 0);
            lock (_lock) _sessions = copy;
        }

        /// <summary>Why the thread stopped early (null while it runs or after a clean stop).</summary>
        public Exception Failure { get; private set; }

        void Run()
        {
            // An exception escaping a thread would end the whole process (the game): catch, record, stop.
            // The main socket's own pings still run.
            try
            {
                using (var socket = new ZmqDealer(_ctx))
                {
                    if (_curve != null) socket.SetCurve(_curve);
                    socket.Connect(_endpoint);
                    while (!_stop.WaitOne(_intervalMs))
                    {
                        string[] ids;
                        lock (_lock) ids = _sessions;
                        if (ids.Length > 0) socket.Send(new[] { Protocol.Ping(_req++, ids) }, 0);
                        while (socket.Receive(0) != null) { } // pongs: liveness is judged on the main socket
                    }
                }
            }
            catch (Exception e) { Failure = e; }
        }

        public void Dispose()
        {
            _stop.Set();
            _thread.Join();
            _stop.Close();
        }
    }
}
