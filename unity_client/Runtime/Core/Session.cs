// One rendering session: its shared-memory slots, frame submission with slot ownership, results,
// prompt changes and resets, and reopening after the daemon lost it (restart or timeout).
//
// Slot k (input slot k + output slot k) belongs to the client until a frame naming it is sent,
// then to the daemon until that seq's result; afterwards the client may read output slot k until
// it reuses slot k. AcquireSlot hands out the slot released longest ago, so the newest output
// stays readable for as long as possible.
using System;
using System.Collections.Generic;

namespace Neurender.Core
{
    public sealed class Session
    {
        readonly NeurenderClient _client;
        public readonly SessionConfig Config;
        public Opened Info { get; private set; }
        public string Id => Info?.Session;
        public readonly SessionStats Stats = new SessionStats();
        /// <summary>Times this session was reopened on the daemon (after a restart or timeout).</summary>
        public int Generation { get; private set; }
        public bool IsClosed { get; private set; }
        /// <summary>Set when the daemon stopped recording this session (code record_failed, e.g. a full
        /// disk); the session goes on rendering.</summary>
        public DaemonErrorException RecordError { get; private set; }
        /// <summary>Why the daemon last ended this session on its own (`session_closed`), else null.</summary>
        public string ClosedReason { get; internal set; }

        ShmRegion _shm;
        LivenessLock _lock;
        long _nextSeq;
        readonly Dictionary<long, InFlight> _inFlight = new Dictionary<long, InFlight>();
        readonly LinkedList<int> _freeSlots = new LinkedList<int>(); // front = released longest ago
        readonly Queue<FrameResult> _results = new Queue<FrameResult>();
        string _pendingPrompt;
        bool _pendingReset;
        long _nextReopenMs;

        struct InFlight { public int Slot; public double SentMs; }

        internal bool NeedsReopen { get; private set; }

        internal Session(NeurenderClient client, SessionConfig config)
        {
            _client = client;
            Config = config;
        }

        internal void OpenOnDaemon()
        {
            bool lockIt = _client.LockWanted && Config.Transport == "shm";
            long req = _client.NextReq();
            var o = (Opened)_client.Request(Protocol.Open(req, Config, lockIt), req, _client.Options.RequestTimeoutMs);
            ShmRegion shm = null;
            LivenessLock lk = null;
            try
            {
                if (o.Transport == "shm") shm = ShmRegion.Open(o.ShmPath, o.ShmSize);
                if (lockIt && o.LockPath != null) lk = new LivenessLock(o.LockPath);
            }
            catch (Exception e)
            {
                if (shm != null) shm.Dispose();
                _client.Send(new[] { Protocol.Close(_client.NextReq(), o.Session) });
                if (e is NeurenderException) throw;
                // e.g. the daemon runs on another host (its /dev/shm is not ours): use the inline transport
                throw new NeurenderException($"cannot map the session's shared memory {o.ShmPath}: {e.Message}", e);
            }
            Info = o;
            _shm = shm;
            _lock = lk;
            _freeSlots.Clear();
            for (int k = 0; k < o.Slots; k++) _freeSlots.AddLast(k);
            NeedsReopen = false;
        }

        // ---- input ---------------------------------------------------------------------------

        public int Width => Info.Width;
        public int Height => Info.Height;

        /// <summary>A slot the client owns now, or -1 when all are with the daemon.</summary>
        public int AcquireSlot()
        {
            if (_freeSlots.Count == 0 || NeedsReopen) { Stats.NoFreeSlot++; return -1; }
            int k = _freeSlots.First.Value;
            _freeSlots.RemoveFirst();
            return k;
        }

        /// <summary>Gives back a slot acquired but not submitted.</summary>
        public void ReleaseSlot(int slot)
        {
            CheckSlot(slot);
            if (!_freeSlots.Contains(slot)) _freeSlots.AddFirst(slot);
        }

        void CheckSlot(int slot)
        {
            if (Info == null || slot < 0 || slot >= Info.Slots) throw new ArgumentOutOfRangeException(nameof(slot));
        }

        ShmRegion Shm
        {
            get
            {
                if (_shm == null) throw new InvalidOperationException(NeedsReopen ? "the session is being reopened" : "this session uses the inline transport");
                return _shm;
            }
        }

        public ChannelInfo Channel(string name)
        {
            int c = Info.ChannelIndex(name);
            if (c < 0) throw new ArgumentException($"channel '{name}' was not declared for this session");
            return Info.Channels[c];
        }

        /// <summary>Copies one channel's pixels ((H, W, C) little-endian, row 0 = top) into input slot `slot`.</summary>
        public void WriteChannel(int slot, string name, byte[] data, int offset = 0)
        {
            CheckSlot(slot);
            int c = Info.ChannelIndex(name);
            if (c < 0) throw new ArgumentException($"channel '{name}' was not declared for this session");
            long n = Info.Channels[c].Nbytes;
            if (data.Length - offset < n) throw new ArgumentException($"channel '{name}' needs {n} bytes, got {data.Length - offset}");
            Shm.Write(Info.InputOffsets[slot][c], data, offset, (int)n);
        }

        /// <summary>The mapped address of a channel in input slot `slot`, for native copies.</summary>
        public IntPtr ChannelPointer(int slot, string name)
        {
            CheckSlot(slot);
            int c = Info.ChannelIndex(name);
            if (c < 0) throw new ArgumentException($"channel '{name}' was not declared for this session");
            return Shm.Pointer(Info.InputOffsets[slot][c], (int)Info.Channels[c].Nbytes);
        }

        /// <summary>The next frame carries this prompt (the daemon restyles from that frame on).</summary>
        public void SetPrompt(string prompt)
        {
            if (prompt == null) throw new ArgumentNullException(nameof(prompt));
            _pendingPrompt = prompt;
        }

        /// <summary>The next frame is a cut: the renderer drops its temporal history.</summary>
        public void Reset() => _pendingReset = true;

        /// <summary>Hands slot `slot` (pixels already written) to the daemon. Returns the frame's
        /// seq, or -1 if it could not be queued (the slot stays the client's). action: ActionDim
        /// floats, null for zeros; constants: names of CONSTANTS_LAYOUT.</summary>
        public long Submit(int slot, float[] action, IDictionary<string, float[]> constants = null)
        {
            CheckSlot(slot);
            if (_shm == null) throw new InvalidOperationException("Submit(slot) needs the shm transport; use SubmitInline");
            return SendFrame(slot, action, constants, null);
        }

        /// <summary>Inline transport: one byte[] per declared channel, in the order of Info.Channels.</summary>
        public long SubmitInline(IList<byte[]> channels, float[] action, IDictionary<string, float[]> constants = null)
        {
            if (Info.Transport != "inline") throw new InvalidOperationException("SubmitInline needs the inline transport");
            return SendFrame(-1, action, constants, channels);
        }

        long SendFrame(int slot, float[] action, IDictionary<string, float[]> constants, IList<byte[]> pixels)
        {
            if (IsClosed) throw new InvalidOperationException("session closed");
            if (NeedsReopen || !_client.Connected)
            {
                Stats.SendFailures++;
                if (slot >= 0) ReleaseSlot(slot);
                return -1;
            }
            long seq = _nextSeq;
            string prompt = _pendingPrompt;
            var frames = new List<byte[]> { Protocol.Frame(Info.Session, seq, slot >= 0 ? slot : (int?)null, action, prompt, _pendingReset, constants) };
            if (pixels != null) frames.AddRange(pixels);
            double sentMs = _client.PreciseMs; // before the send: the reply can beat the next line
            if (!_client.Send(frames))
            {
                Stats.SendFailures++;
                if (slot >= 0) ReleaseSlot(slot);
                return -1;
            }
            _nextSeq++;
            if (prompt != null) { Config.Prompt = prompt; _pendingPrompt = null; } // a reopen restores it
            _pendingReset = false;
            _inFlight[seq] = new InFlight { Slot = slot, SentMs = sentMs };
            Stats.Submitted++;
            return seq;
        }

        // ---- results -------------------------------------------------------------------------

        public int InFlightCount => _inFlight.Count;

        /// <summary>The next result (in seq order per kind of answer), if any arrived; call the
        /// client's Pump first.</summary>
        public bool TryGetResult(out FrameResult r)
        {
            if (_results.Count > 0) { r = _results.Dequeue(); return true; }
            r = null;
            return false;
        }

        /// <summary>Pumps the client until a result arrives or timeoutMs passes (null then).</summary>
        public FrameResult NextResult(int timeoutMs)
        {
            long deadline = _client.NowMs + timeoutMs;
            FrameResult r;
            while (!TryGetResult(out r))
            {
                long left = deadline - _client.NowMs;
                if (left <= 0) return null;
                _client.Pump((int)Math.Min(left, 20));
            }
            return r;
        }

        /// <summary>Copies output slot `slot` ((H, W, C) of Info.Output, row 0 = top) into dst.</summary>
        public void ReadOutput(int slot, byte[] dst)
        {
            CheckSlot(slot);
            int n = (int)Info.Output.Nbytes;
            if (dst.Length < n) throw new ArgumentException($"output needs {n} bytes, got {dst.Length}");
            Shm.Read(Info.OutputOffsets[slot], dst, 0, n);
        }

        public IntPtr OutputPointer(int slot)
        {
            CheckSlot(slot);
            return Shm.Pointer(Info.OutputOffsets[slot], (int)Info.Output.Nbytes);
        }

        FrameResult Finish(long seq, FrameStatus status)
        {
            InFlight f;
            if (!_inFlight.TryGetValue(seq, out f)) return null; // not ours, or answered already
            _inFlight.Remove(seq);
            if (f.Slot >= 0) _freeSlots.AddLast(f.Slot);
            var r = new FrameResult { Seq = seq, Slot = f.Slot, Status = status, LatencyMs = _client.PreciseMs - f.SentMs };
            _results.Enqueue(r);
            return r;
        }

        internal void OnDropped(long[] seqs)
        {
            foreach (long seq in seqs)
                if (Finish(seq, FrameStatus.Dropped) != null) Stats.Dropped++;
        }

        internal void OnFrameDone(FrameDone d)
        {
            OnDropped(d.Dropped);
            FrameResult r = Finish(d.Seq, FrameStatus.Done);
            if (r == null) return;
            r.QueueMs = d.QueueMs; r.RenderMs = d.RenderMs; r.DaemonMs = d.DaemonMs; r.Pixels = d.Pixels;
            if (d.RecordErrorCode != null)
                RecordError = DaemonErrorException.From(d.RecordErrorCode, d.RecordErrorMessage, null, d.Session, d.Seq);
            r.Repaired = d.Repaired;
            Stats.Repaired += d.Repaired;
            Stats.Done++;
            Stats.AddLatency(r.LatencyMs);
            Stats.LastRenderMs = d.RenderMs;
        }

        /// <summary>An error naming this session. True when it was handled here.</summary>
        internal bool OnError(DaemonErrorException e)
        {
            if (e is UnknownSessionException) { MarkLost(); return true; }
            bool handled = false;
            if (e.Seq.HasValue)
            {
                FrameResult r = Finish(e.Seq.Value, FrameStatus.Failed);
                if (r != null) { r.Error = e; Stats.Failed++; handled = true; }
            }
            // The session died with its render worker: the rest in flight is lost, reopen it.
            if (e is WorkerLostException) { MarkLost(); handled = true; }
            return handled;
        }

        // ---- loss and reopen -----------------------------------------------------------------

        /// <summary>The daemon no longer knows this session: every frame in flight is Lost, and the
        /// next Pump reopens it with the current prompt, its first frame marked as a reset.</summary>
        internal void MarkLost()
        {
            if (NeedsReopen || IsClosed) return;
            NeedsReopen = true;
            _client.Retire(Id);
            foreach (long seq in new List<long>(_inFlight.Keys))
                if (Finish(seq, FrameStatus.Lost) != null) Stats.Lost++;
            ReleaseMappings();
        }

        internal bool ReopenDue => _client.NowMs >= _nextReopenMs;

        internal void Reopen()
        {
            if (!ReopenDue) return;
            _nextReopenMs = _client.NowMs + _client.Options.ReconnectIntervalMs;
            try { OpenOnDaemon(); }
            catch (NeurenderException) { return; } // refused (e.g. too_many_sessions), timed out, unmappable: retry later
            Generation++;
            Stats.Reopened++;
            _client.SessionReopened();
            _pendingReset = true; // the renderer's history died with the old session
        }

        void ReleaseMappings()
        {
            if (_lock != null) { _lock.Dispose(); _lock = null; }
            if (_shm != null) { _shm.Dispose(); _shm = null; }
        }

        /// <summary>Closes the session on the daemon (waits for `closed`) and unmaps its memory.</summary>
        public void Close()
        {
            if (IsClosed) return;
            try
            {
                if (!NeedsReopen && _client.Connected)
                {
                    long req = _client.NextReq();
                    var c = (Closed)_client.Request(Protocol.Close(req, Info.Session), req, _client.Options.RequestTimeoutMs);
                    OnDropped(c.Dropped);
                }
            }
            finally { CloseQuietly(); }
        }

        internal void CloseQuietly()
        {
            IsClosed = true;
            _client.Retire(Id);
            ReleaseMappings();
            _client.Forget(this);
        }
    }
}
