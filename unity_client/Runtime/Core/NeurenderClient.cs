// The connection to one neurender daemon: a DEALER socket, the hello/welcome handshake, request /
// reply matching by `req`, heartbeats, and recovery when the daemon dies or restarts. All socket
// work happens on the thread that calls Pump (Unity: the main thread, once per frame; every call
// is non-blocking there), so nothing here takes a lock.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;

namespace Neurender.Core
{
    public sealed class ClientOptions
    {
        /// <summary>null: the local daemon, ipc://&lt;runtime dir&gt;/daemon.sock.</summary>
        public string Endpoint;
        /// <summary>CURVE keys for tcp:// endpoints (the daemon's public key and an allow-listed pair).</summary>
        public CurveKeys Curve;
        public string ClientName = "neurender-csharp";
        /// <summary>How long hello / open / close wait for their reply.</summary>
        public int RequestTimeoutMs = 5000;
        /// <summary>The daemon counts as gone when nothing at all came back this long after we sent
        /// something (pings go out every heartbeat, so a live daemon always answers); 0 = three
        /// heartbeat intervals from the welcome.</summary>
        public int LostAfterMs;
        /// <summary>Pause between reconnect attempts while the daemon is gone.</summary>
        public int ReconnectIntervalMs = 500;
        /// <summary>Hold a flock on each session's lock file so the daemon sees this process die at once.</summary>
        public bool UseLivenessLock = true;
        /// <summary>Ping the daemon from a background thread (own socket) too, so a stalled owner
        /// thread (a Unity scene load) does not let the daemon time the sessions out.</summary>
        public bool BackgroundHeartbeat = true;

        /// <summary>ipc://$NEURENDER_RUNTIME_DIR/daemon.sock, else $XDG_RUNTIME_DIR/neurender/..., else
        /// /tmp/neurender-&lt;uid&gt;/... (docs/protocol.md, Transport).</summary>
        public static string LocalEndpoint()
        {
            string dir = Environment.GetEnvironmentVariable("NEURENDER_RUNTIME_DIR");
            if (string.IsNullOrEmpty(dir))
            {
                string xdg = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
                if (!string.IsNullOrEmpty(xdg)) dir = Path.Combine(xdg, "neurender");
                else if (LivenessLock.Supported) dir = "/tmp/neurender-" + LivenessLock.UserId();
                else throw new NeurenderException("no local daemon endpoint on this platform: set ClientOptions.Endpoint (tcp://...)");
            }
            return "ipc://" + Path.Combine(dir, "daemon.sock");
        }
    }

    public sealed class NeurenderClient : IDisposable
    {
        public readonly ClientOptions Options;
        public readonly string Endpoint;
        public Welcome Welcome { get; private set; }
        /// <summary>False from the moment the daemon is considered gone until a new welcome.</summary>
        public bool Connected { get; private set; }
        public int Reconnects { get; private set; }
        /// <summary>Times a welcome came from a different daemon process than the one before.</summary>
        public int Restarts { get; private set; }

        ZmqContext _ctx;
        ZmqDealer _socket;
        HeartbeatThread _heartbeat;
        bool _sessionsChanged; // a session was lost or reopened: the heartbeat thread's list is stale
        readonly List<Session> _sessions = new List<Session>();
        readonly HashSet<string> _retired = new HashSet<string>(); // ids our sessions had before a reopen or close
        readonly Queue<NeurenderException> _errors = new Queue<NeurenderException>();
        readonly Stopwatch _clock = Stopwatch.StartNew();
        long _nextReq = 1;
        long _lastPingMs, _awaitingSinceMs = -1, _nextAttemptMs;
        long _helloReq = -1;
        bool _disposed;

        public NeurenderClient(ClientOptions options = null)
        {
            Options = options ?? new ClientOptions();
            Endpoint = Options.Endpoint ?? ClientOptions.LocalEndpoint();
            _ctx = new ZmqContext();
        }

        internal long NowMs => _clock.ElapsedMilliseconds;
        internal double PreciseMs => _clock.Elapsed.TotalMilliseconds;
        internal long NextReq() => _nextReq++;
        int HeartbeatMs => Welcome != null ? Math.Max(50, Welcome.HeartbeatMs) : 1000;
        int LostAfterMs => Options.LostAfterMs > 0 ? Options.LostAfterMs : 3 * HeartbeatMs;

        void NewSocket()
        {
            if (_socket != null) _socket.Dispose();
            _socket = new ZmqDealer(_ctx);
            if (Options.Curve != null) _socket.SetCurve(Options.Curve);
            // Over TCP a vanished peer (cable, NAT, crashed host) is only seen through traffic:
            // ZMTP pings let libzmq drop and redial the connection by itself.
            if (Endpoint.StartsWith("tcp://")) _socket.SetHeartbeat(1000, 3000, 6000);
            _socket.Connect(Endpoint);
            _awaitingSinceMs = -1;
        }

        /// <summary>Connects and waits for the daemon's welcome (DaemonTimeoutException if none).</summary>
        public Welcome Connect()
        {
            NewSocket();
            long req = NextReq();
            var w = (Welcome)Request(Protocol.Hello(req, Options.ClientName), req, Options.RequestTimeoutMs);
            Welcome = w;
            Connected = true;
            _lastPingMs = NowMs;
            StartHeartbeatThread();
            return w;
        }

        void StartHeartbeatThread()
        {
            if (!Options.BackgroundHeartbeat || _heartbeat != null) return;
            _heartbeat = new HeartbeatThread(_ctx, Endpoint, Options.Curve, HeartbeatMs / 2);
            UpdateHeartbeatSessions();
        }

        // Only sessions the daemon knows: a lost one must not be kept "alive" under its old id.
        internal void UpdateHeartbeatSessions()
        {
            _sessionsChanged = false;
            if (_heartbeat == null) return;
            var ids = new List<string>();
            foreach (var s in _sessions) if (!s.NeedsReopen && !s.IsClosed && s.Id != null) ids.Add(s.Id);
            _heartbeat.SetSessions(ids);
        }

        /// <summary>Opens a session; throws the daemon's typed error (LimitExceededException, ...)
        /// if it refuses.</summary>
        public Session Open(SessionConfig config)
        {
            if (!Connected) throw new NeurenderException("not connected to the daemon");
            var s = new Session(this, config.Clone());
            s.OpenOnDaemon();
            _sessions.Add(s);
            UpdateHeartbeatSessions();
            return s;
        }

        internal void Forget(Session s) { _sessions.Remove(s); UpdateHeartbeatSessions(); }
        internal void Retire(string id) { if (id != null) _retired.Add(id); _sessionsChanged = true; }
        internal void SessionReopened() => _sessionsChanged = true;

        internal bool LockWanted => Options.UseLivenessLock && LivenessLock.Supported;

        /// <summary>Sends frames as one message without waiting (false when it could not be queued).</summary>
        internal bool Send(IList<byte[]> frames)
        {
            if (_socket == null) return false;
            bool ok = _socket.Send(frames, 0);
            if (ok && _awaitingSinceMs < 0) _awaitingSinceMs = NowMs;
            return ok;
        }

        /// <summary>Sends arbitrary frames, bypassing the encoder: for diagnostics and for the tests
        /// that check how the daemon answers malformed requests. Answers without a matching
        /// request land in TakeError().</summary>
        public bool SendRaw(IList<byte[]> frames) => Send(frames);

        /// <summary>The oldest error reply no request or session claimed (e.g. bad_msgpack, which
        /// cannot name a req), or a ProtocolViolationException for a broken reply; null if none.</summary>
        /// <summary>The latest `progress` message (what the daemon is busy with: opening a session,
        /// a slow first frame), for a loading line; null before the first.</summary>
        public Progress LastProgress { get; private set; }

        public NeurenderException TakeError() => _errors.Count > 0 ? _errors.Dequeue() : null;

        /// <summary>Sends a request and waits for the reply carrying the same req, handling every
        /// other message on the way. A matching error reply is thrown as its typed exception.</summary>
        internal Reply Request(byte[] header, long req, int timeoutMs)
        {
            if (!Send(new[] { header })) throw new DaemonTimeoutException("could not queue the request to " + Endpoint);
            long deadline = NowMs + timeoutMs;
            while (true)
            {
                long left = deadline - NowMs;
                if (left < 0) throw new DaemonTimeoutException($"no reply from the daemon at {Endpoint} within {timeoutMs} ms");
                var frames = _socket.Receive((int)Math.Min(left, int.MaxValue));
                if (frames == null) continue;
                Reply r = DecodeOrRecord(frames);
                if (r == null) continue;
                if (r is Progress) deadline = NowMs + timeoutMs; // the daemon is still at it: wait on
                long? rreq = ReqOf(r);
                if (rreq == req)
                {
                    if (r is ErrorReply) throw ((ErrorReply)r).Error;
                    return r;
                }
                Dispatch(r);
            }
        }

        static long? ReqOf(Reply r)
        {
            if (r is Welcome) return ((Welcome)r).Req;
            if (r is Opened) return ((Opened)r).Req;
            if (r is Closed) return ((Closed)r).Req;
            if (r is Pong) return ((Pong)r).Req;
            if (r is ErrorReply) return ((ErrorReply)r).Error.Req;
            return null;
        }

        Reply DecodeOrRecord(List<byte[]> frames)
        {
            _awaitingSinceMs = -1; // anything at all from the daemon proves it is alive
            try { return Protocol.Decode(frames); }
            catch (ProtocolViolationException e) { _errors.Enqueue(e); return null; }
        }

        /// <summary>Handles everything that has arrived (waiting up to timeoutMs for the first
        /// message), sends heartbeats, and notices and repairs a lost daemon. Call once per frame.</summary>
        public void Pump(int timeoutMs = 0)
        {
            if (_disposed) throw new ObjectDisposedException(nameof(NeurenderClient));
            if (_socket == null) StartReconnect(); // Pump without Connect: connect in the background
            int wait = timeoutMs;
            List<byte[]> frames;
            while ((frames = _socket.Receive(wait)) != null)
            {
                wait = 0;
                Reply r = DecodeOrRecord(frames);
                if (r != null) Dispatch(r);
            }
            long now = NowMs;
            if (Connected)
            {
                if (_awaitingSinceMs >= 0 && now - _awaitingSinceMs > LostAfterMs) OnDaemonLost();
                else if (now - _lastPingMs >= HeartbeatMs / 2) SendPing();
            }
            if (!Connected && now >= _nextAttemptMs) StartReconnect();
            if (Connected && _sessions.Exists(x => x.NeedsReopen && x.ReopenDue)) ReopenLostSessions();
            if (Connected) StartHeartbeatThread();
            if (_sessionsChanged) UpdateHeartbeatSessions();
        }

        // The daemon forgot sessions while the connection looked fine: it restarted and libzmq
        // reconnected underneath us, or it timed them out. A fresh welcome says which (pid), then
        // each session is opened again.
        void ReopenLostSessions()
        {
            try
            {
                long req = NextReq();
                var w = (Welcome)Request(Protocol.Hello(req, Options.ClientName), req, Options.RequestTimeoutMs);
                if (Welcome != null && w.Pid != Welcome.Pid) Restarts++;
                Welcome = w;
            }
            catch (DaemonTimeoutException) { OnDaemonLost(); return; }
            foreach (var s in _sessions.ToArray())
                if (s.NeedsReopen) s.Reopen();
        }

        void SendPing()
        {
            _lastPingMs = NowMs;
            var ids = new List<string>();
            foreach (var s in _sessions) if (!s.NeedsReopen) ids.Add(s.Id);
            Send(new[] { Protocol.Ping(NextReq(), ids) });
        }

        void OnDaemonLost()
        {
            Connected = false;
            foreach (var s in _sessions) s.MarkLost();
            _nextAttemptMs = NowMs;
        }

        // A fresh socket and a hello; the welcome is handled in Dispatch. libzmq reconnects a
        // socket by itself, but a new socket also drops whatever was queued for the dead daemon.
        void StartReconnect()
        {
            _nextAttemptMs = NowMs + Options.ReconnectIntervalMs;
            NewSocket();
            _helloReq = NextReq();
            Send(new[] { Protocol.Hello(_helloReq, Options.ClientName) });
        }

        void Dispatch(Reply r)
        {
            if (r is Welcome)
            {
                var w = (Welcome)r;
                if (!Connected && w.Req == _helloReq)
                {
                    if (Welcome != null && w.Pid != Welcome.Pid) Restarts++;
                    Welcome = w;
                    Connected = true;
                    Reconnects++;
                    _lastPingMs = NowMs;
                }
                return;
            }
            if (r is FrameDone)
            {
                var d = (FrameDone)r;
                Session s = Find(d.Session);
                if (s != null) s.OnFrameDone(d);
                return; // a result for a session we no longer have (before a reopen): nothing to do
            }
            if (r is Progress)
            {
                LastProgress = (Progress)r;
                return;
            }
            if (r is SessionClosed)
            {
                var c = (SessionClosed)r;
                Session s = Find(c.Session);
                if (s != null) { s.OnDropped(c.Dropped); s.ClosedReason = c.Reason; s.MarkLost(); }
                return;
            }
            if (r is Pong)
            {
                foreach (string id in ((Pong)r).Unknown)
                {
                    Session s = Find(id);
                    if (s != null) s.MarkLost(); // the daemon restarted or timed the session out
                }
                return;
            }
            if (r is ErrorReply)
            {
                var e = ((ErrorReply)r).Error;
                Session s = e.Session != null ? Find(e.Session) : null;
                if (s != null) s.OnDropped(((ErrorReply)r).Dropped);
                if (s != null && s.OnError(e)) return;
                if (s == null && (e is UnknownSessionException || e is WorkerLostException) && _retired.Contains(e.Session))
                    return; // an old id of ours: stale
                _errors.Enqueue(e);
                return;
            }
            // opened / closed whose request already timed out: nothing waits for them.
        }

        Session Find(string id)
        {
            foreach (var s in _sessions) if (s.Id == id && !s.NeedsReopen) return s;
            return null;
        }

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            if (_heartbeat != null) { _heartbeat.Dispose(); _heartbeat = null; }
            foreach (var s in _sessions.ToArray()) s.CloseQuietly();
            if (_socket != null) { _socket.Dispose(); _socket = null; }
            if (_ctx != null) { _ctx.Dispose(); _ctx = null; }
        }
    }
}
