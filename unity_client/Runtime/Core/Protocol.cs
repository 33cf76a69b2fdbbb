// neurender wire format, protocol version 1, client side: builds request headers and decodes
// reply headers into typed messages. The contract is docs/protocol.md; this file only encodes and
// validates, it opens no sockets (NeurenderClient does that).
//
// Every message is multipart: frame 0 a msgpack map {"v": 1, "type": ..., ...}, further frames raw
// pixels (inline transport only). A DEALER sends [header, *pixels], no empty delimiter frame.
using System;
using System.Collections.Generic;

namespace Neurender.Core
{
    public static class Protocol
    {
        public const int Version = 1;
        public static readonly string[] ReplyTypes = { "welcome", "opened", "frame_done", "closed", "pong", "error", "progress", "session_closed" };

        static OrderedMap Header(string type)
        {
            var m = new OrderedMap();
            m.Add("v", Version);
            m.Add("type", type);
            return m;
        }

        public static byte[] Hello(long req, string client)
        {
            var m = Header("hello");
            m.Add("req", req);
            if (client != null) m.Add("client", client);
            return MsgPackWriter.Pack(m);
        }

        public static byte[] Open(long req, SessionConfig c, bool lockPromise)
        {
            var m = Header("open");
            m.Add("req", req);
            m.Add("width", c.Width);
            m.Add("height", c.Height);
            var chans = new OrderedMap();
            foreach (var kv in c.Channels) chans.Add(kv.Key, kv.Value);
            m.Add("channels", chans);
            m.Add("action_dim", c.ActionDim);
            m.Add("output_format", c.OutputFormat);
            m.Add("transport", c.Transport);
            if (c.Prompt != null) m.Add("prompt", c.Prompt);
            if (c.Steps > 0) m.Add("steps", c.Steps);
            m.Add("slots", c.Slots);
            if (lockPromise) m.Add("lock", true);
            if (c.Record != null) m.Add("record", c.Record);
            return MsgPackWriter.Pack(m);
        }

        /// <summary>A frame header. slot is null in inline mode; action null means zeros; prompt only
        /// when it changed; constants names from bridge/channels.py CONSTANTS_LAYOUT.</summary>
        public static byte[] Frame(string session, long seq, int? slot, float[] action, string prompt, bool reset,
                                   IDictionary<string, float[]> constants)
        {
            var m = Header("frame");
            m.Add("session", session);
            m.Add("seq", seq);
            if (slot.HasValue) m.Add("slot", slot.Value);
            if (action != null) m.Add("action", action);
            if (prompt != null) m.Add("prompt", prompt);
            if (reset) m.Add("reset", true);
            if (constants != null && constants.Count > 0)
            {
                var cm = new OrderedMap();
                foreach (var kv in constants) cm.Add(kv.Key, kv.Value);
                m.Add("constants", cm);
            }
            return MsgPackWriter.Pack(m);
        }

        public static byte[] Close(long req, string session)
        {
            var m = Header("close");
            m.Add("req", req);
            m.Add("session", session);
            return MsgPackWriter.Pack(m);
        }

        public static byte[] Ping(long req, IList<string> sessions)
        {
            var m = Header("ping");
            m.Add("req", req);
            if (sessions != null && sessions.Count > 0) m.Add("sessions", new List<string>(sessions));
            return MsgPackWriter.Pack(m);
        }

        /// <summary>Decodes one daemon message (all its frames). An `error` reply decodes to an
        /// ErrorReply carrying the typed exception; it is not thrown here.</summary>
        public static Reply Decode(IList<byte[]> frames)
        {
            if (frames == null || frames.Count == 0) throw new ProtocolViolationException("empty reply");
            object o;
            try { o = MsgPackReader.Unpack(frames[0]); }
            catch (MsgPackException e) { throw new ProtocolViolationException("reply header: " + e.Message, e); }
            var h = o as Dictionary<string, object>;
            if (h == null) throw new ProtocolViolationException("reply header is not a map");
            var f = new Fields(h);
            long v = f.Int("v");
            if (v != Version) throw new ProtocolViolationException($"reply has protocol version {v}, this client speaks {Version}");
            string type = f.Str("type");
            var extra = new List<byte[]>();
            for (int i = 1; i < frames.Count; i++) extra.Add(frames[i]);
            Reply r;
            switch (type)
            {
                case "welcome": r = new Welcome(f); break;
                case "opened": r = new Opened(f); break;
                case "frame_done": r = new FrameDone(f, extra); break;
                case "closed": r = new Closed(f); break;
                case "pong": r = new Pong(f); break;
                case "error": r = new ErrorReply(f); break;
                case "progress": r = new Progress(f); break;
                case "session_closed": r = new SessionClosed(f); break;
                default: throw new ProtocolViolationException($"unknown reply type '{type}'");
            }
            if (extra.Count > 0 && !(r is FrameDone)) throw new ProtocolViolationException($"{type} reply with {extra.Count} extra frames");
            return r;
        }
    }

    /// <summary>Typed access to a decoded header map; a missing or mistyped field is a
    /// ProtocolViolationException naming the field.</summary>
    public sealed class Fields
    {
        readonly Dictionary<string, object> _m;
        public Fields(Dictionary<string, object> m) { _m = m; }

        public bool Has(string key) { object v; return _m.TryGetValue(key, out v) && v != null; }

        object Get(string key)
        {
            object v;
            if (!_m.TryGetValue(key, out v) || v == null) throw new ProtocolViolationException($"reply lacks field '{key}'");
            return v;
        }

        public long Int(string key)
        {
            object v = Get(key);
            if (v is long) return (long)v;
            throw new ProtocolViolationException($"reply field '{key}' is not an integer");
        }

        public long? OptInt(string key) => Has(key) ? Int(key) : (long?)null;

        public double Num(string key)
        {
            object v = Get(key);
            if (v is double) return (double)v;
            if (v is long) return (long)v;
            throw new ProtocolViolationException($"reply field '{key}' is not a number");
        }

        public string Str(string key)
        {
            object v = Get(key);
            if (v is string) return (string)v;
            throw new ProtocolViolationException($"reply field '{key}' is not a string");
        }

        public string OptStr(string key) => Has(key) ? Str(key) : null;

        public Fields Map(string key)
        {
            var v = Get(key) as Dictionary<string, object>;
            if (v == null) throw new ProtocolViolationException($"reply field '{key}' is not a map");
            return new Fields(v);
        }

        public Dictionary<string, object> Raw(string key)
        {
            var v = Get(key) as Dictionary<string, object>;
            if (v == null) throw new ProtocolViolationException($"reply field '{key}' is not a map");
            return v;
        }

        public List<object> List(string key)
        {
            var v = Get(key) as List<object>;
            if (v == null) throw new ProtocolViolationException($"reply field '{key}' is not an array");
            return v;
        }

        public long[] IntList(string key) => Ints(List(key), key);

        public static long[] Ints(List<object> list, string what)
        {
            var r = new long[list.Count];
            for (int i = 0; i < r.Length; i++)
            {
                if (!(list[i] is long)) throw new ProtocolViolationException($"'{what}' holds a non-integer");
                r[i] = (long)list[i];
            }
            return r;
        }
    }

    public abstract class Reply
    {
        public abstract string Type { get; }
    }

    public sealed class Welcome : Reply
    {
        public override string Type => "welcome";
        public readonly long? Req;
        public readonly string ServerVersion;
        public readonly long Pid;
        public readonly Dictionary<string, object> Renderer, Limits;
        public readonly int HeartbeatMs, SessionTimeoutMs;

        internal Welcome(Fields f)
        {
            Req = f.OptInt("req");
            if (f.Int("protocol") != Protocol.Version) throw new ProtocolViolationException("welcome: protocol mismatch");
            ServerVersion = f.Str("server_version");
            Pid = f.Int("pid");
            Renderer = f.Raw("renderer");
            Limits = f.Raw("limits");
            HeartbeatMs = (int)f.Int("heartbeat_ms");
            SessionTimeoutMs = (int)f.Int("session_timeout_ms");
        }
    }

    public sealed class ChannelInfo
    {
        public readonly string Name, Dtype;
        public readonly int Components;
        public readonly long Nbytes;

        internal ChannelInfo(Fields f, bool isOutput)
        {
            Name = isOutput ? f.Str("format") : f.Str("name");
            Dtype = f.Str("dtype");
            Components = (int)f.Int("components");
            Nbytes = f.Int("nbytes");
        }
    }

    public sealed class Opened : Reply
    {
        public override string Type => "opened";
        public readonly long Req;
        public readonly string Session, Transport, OutputFormat, ShmPath, LockPath;
        public readonly int Slots, Width, Height, ActionDim, HeartbeatMs, SessionTimeoutMs;
        public readonly ChannelInfo[] Channels;
        public readonly ChannelInfo Output;
        public readonly long ShmSize;
        public readonly long[][] InputOffsets;   // [slot][channel]
        public readonly long[] OutputOffsets;    // [slot]
        public readonly Dictionary<string, object> Renderer;

        internal Opened(Fields f)
        {
            Req = f.Int("req");
            Session = f.Str("session");
            Transport = f.Str("transport");
            Slots = (int)f.Int("slots");
            Width = (int)f.Int("width");
            Height = (int)f.Int("height");
            ActionDim = (int)f.Int("action_dim");
            OutputFormat = f.Str("output_format");
            var chans = f.List("channels");
            Channels = new ChannelInfo[chans.Count];
            for (int i = 0; i < chans.Count; i++)
            {
                var m = chans[i] as Dictionary<string, object>;
                if (m == null) throw new ProtocolViolationException("opened: channels entry is not a map");
                Channels[i] = new ChannelInfo(new Fields(m), false);
            }
            Output = new ChannelInfo(f.Map("output"), true);
            ShmPath = f.OptStr("shm_path");
            LockPath = f.OptStr("lock_path");
            ShmSize = f.Int("shm_size");
            var ins = f.List("input_offsets");
            InputOffsets = new long[ins.Count][];
            for (int s = 0; s < ins.Count; s++)
            {
                var row = ins[s] as List<object>;
                if (row == null) throw new ProtocolViolationException("opened: input_offsets row is not an array");
                InputOffsets[s] = Fields.Ints(row, "input_offsets");
            }
            OutputOffsets = f.IntList("output_offsets");
            Renderer = f.Raw("renderer");
            HeartbeatMs = (int)f.Int("heartbeat_ms");
            SessionTimeoutMs = (int)f.Int("session_timeout_ms");
            Validate();
        }

        // Offsets come from another process: check them once here so a slot write can never land
        // outside the mapping or on another slot.
        void Validate()
        {
            if (Transport != "shm") return;
            if (ShmPath == null) throw new ProtocolViolationException("opened: shm transport without shm_path");
            if (InputOffsets.Length != Slots || OutputOffsets.Length != Slots)
                throw new ProtocolViolationException("opened: offsets do not match the slot count");
            for (int s = 0; s < Slots; s++)
            {
                if (InputOffsets[s].Length != Channels.Length) throw new ProtocolViolationException("opened: an input slot lacks channel offsets");
                for (int c = 0; c < Channels.Length; c++) CheckRange(InputOffsets[s][c], Channels[c].Nbytes);
                CheckRange(OutputOffsets[s], Output.Nbytes);
            }
        }

        void CheckRange(long offset, long n)
        {
            if (offset < 0 || n < 0 || offset + n > ShmSize) throw new ProtocolViolationException($"opened: region [{offset}, {offset + n}) outside shm_size {ShmSize}");
        }

        public int ChannelIndex(string name)
        {
            for (int i = 0; i < Channels.Length; i++) if (Channels[i].Name == name) return i;
            return -1;
        }
    }

    public sealed class FrameDone : Reply
    {
        public override string Type => "frame_done";
        public readonly string Session;
        public readonly long Seq;
        public readonly int? Slot;
        public readonly long[] Dropped;
        public readonly double QueueMs, RenderMs, DaemonMs;
        public readonly byte[] Pixels; // inline transport: the output image; null in shm mode
        public readonly string RecordErrorCode, RecordErrorMessage; // once, when the daemon stopped recording
        public readonly long Repaired; // NaN/inf input values the daemon replaced by 0 before rendering

        internal FrameDone(Fields f, List<byte[]> extra)
        {
            Session = f.Str("session");
            Seq = f.Int("seq");
            long? slot = f.OptInt("slot");
            Slot = slot.HasValue ? (int)slot.Value : (int?)null;
            Dropped = f.IntList("dropped");
            var t = f.Map("timings");
            QueueMs = t.Num("queue_ms");
            RenderMs = t.Num("render_ms");
            DaemonMs = t.Num("daemon_ms");
            if (f.Has("record_error"))
            {
                var e = f.Map("record_error");
                RecordErrorCode = e.Str("code");
                RecordErrorMessage = e.Str("message");
            }
            if (extra.Count > 1) throw new ProtocolViolationException("frame_done with more than one pixel frame");
            Pixels = extra.Count == 1 ? extra[0] : null;
            Repaired = f.OptInt("repaired") ?? 0;
        }
    }

    /// <summary>The daemon is still working on an open (req) or a frame (seq) of a session: a cold
    /// model start, prompt encoding, a first frame that compiles. Sent every progress_ms while it
    /// lasts; a client restarts its reply timeout on each one.</summary>
    public sealed class Progress : Reply
    {
        public override string Type => "progress";
        public readonly string Session;
        public readonly long? Req, Seq;
        public readonly string Stage;   // "opening" | "first_frame" | "rendering"
        public readonly string Message; // for people
        public readonly long ElapsedMs;
        internal Progress(Fields f)
        {
            Session = f.OptStr("session");
            Req = f.OptInt("req");
            Seq = f.OptInt("seq");
            Stage = f.Str("stage");
            Message = f.OptStr("message") ?? Stage;
            ElapsedMs = f.OptInt("elapsed_ms") ?? 0;
        }
    }

    /// <summary>The daemon ended a session on its own (timeout, lock released, key revoked, shutdown);
    /// Dropped lists every frame of it that had no answer yet.</summary>
    public sealed class SessionClosed : Reply
    {
        public override string Type => "session_closed";
        public readonly string Session;
        public readonly string Reason;
        public readonly long[] Dropped;
        internal SessionClosed(Fields f)
        {
            Session = f.Str("session");
            Reason = f.OptStr("reason") ?? "";
            Dropped = f.Has("dropped") ? f.IntList("dropped") : new long[0];
        }
    }

    public sealed class Closed : Reply
    {
        public override string Type => "closed";
        public readonly long Req;
        public readonly string Session;
        public readonly long[] Dropped; // seqs that were waiting when the session closed
        internal Closed(Fields f)
        {
            Req = f.Int("req");
            Session = f.Str("session");
            Dropped = f.Has("dropped") ? f.IntList("dropped") : new long[0];
        }
    }

    public sealed class Pong : Reply
    {
        public override string Type => "pong";
        public readonly long? Req;
        public readonly List<string> Unknown = new List<string>();

        internal Pong(Fields f)
        {
            Req = f.OptInt("req");
            foreach (object o in f.List("unknown"))
            {
                if (!(o is string)) throw new ProtocolViolationException("pong: unknown holds a non-string");
                Unknown.Add((string)o);
            }
        }
    }

    public sealed class ErrorReply : Reply
    {
        public override string Type => "error";
        public readonly DaemonErrorException Error;
        public readonly long[] Dropped; // earlier seqs of the same session replaced while waiting

        internal ErrorReply(Fields f)
        {
            Error = DaemonErrorException.From(f.Str("code"), f.Str("message"), f.OptInt("req"), f.OptStr("session"), f.OptInt("seq"));
            Dropped = f.Has("dropped") ? f.IntList("dropped") : new long[0];
        }
    }
}
