// Exceptions of the neurender client. Every `error` reply of the daemon becomes a
// DaemonErrorException subclass named after its code (docs/protocol.md, "Errors"), so callers
// catch exactly the failure they can handle: BadSeqException, UnknownSessionException, ...
using System;
using System.Collections.Generic;

namespace Neurender.Core
{
    public class NeurenderException : Exception
    {
        public NeurenderException(string message) : base(message) { }
        public NeurenderException(string message, Exception inner) : base(message, inner) { }
    }

    /// <summary>The daemon did not answer in time (not running, restarting, or overloaded).</summary>
    public sealed class DaemonTimeoutException : NeurenderException
    {
        public DaemonTimeoutException(string message) : base(message) { }
    }

    /// <summary>The daemon sent something that is not a valid protocol-1 reply.</summary>
    public sealed class ProtocolViolationException : NeurenderException
    {
        public ProtocolViolationException(string message) : base(message) { }
        public ProtocolViolationException(string message, Exception inner) : base(message, inner) { }
    }

    /// <summary>An `error` reply: {code, message, req?, session?, seq?}.</summary>
    public class DaemonErrorException : NeurenderException
    {
        public readonly string Code;
        public readonly string DaemonMessage;
        public readonly long? Req;
        public readonly string Session;
        public readonly long? Seq;

        public DaemonErrorException(string code, string message, long? req, string session, long? seq)
            : base($"neurender daemon: {code}: {message}")
        {
            Code = code; DaemonMessage = message; Req = req; Session = session; Seq = seq;
        }

        static readonly Dictionary<string, Func<string, long?, string, long?, DaemonErrorException>> ByCode =
            new Dictionary<string, Func<string, long?, string, long?, DaemonErrorException>>
            {
                { "bad_msgpack", (m, r, s, q) => new BadMsgpackException(m, r, s, q) },
                { "too_large", (m, r, s, q) => new TooLargeException(m, r, s, q) },
                { "bad_version", (m, r, s, q) => new BadVersionException(m, r, s, q) },
                { "unknown_type", (m, r, s, q) => new UnknownTypeException(m, r, s, q) },
                { "bad_field", (m, r, s, q) => new BadFieldException(m, r, s, q) },
                { "limit_exceeded", (m, r, s, q) => new LimitExceededException(m, r, s, q) },
                { "too_many_sessions", (m, r, s, q) => new TooManySessionsException(m, r, s, q) },
                { "unknown_session", (m, r, s, q) => new UnknownSessionException(m, r, s, q) },
                { "bad_slot", (m, r, s, q) => new BadSlotException(m, r, s, q) },
                { "bad_seq", (m, r, s, q) => new BadSeqException(m, r, s, q) },
                { "size_mismatch", (m, r, s, q) => new SizeMismatchException(m, r, s, q) },
                { "non_finite", (m, r, s, q) => new NonFiniteException(m, r, s, q) },
                { "unsupported", (m, r, s, q) => new UnsupportedException(m, r, s, q) },
                { "renderer_error", (m, r, s, q) => new RendererErrorException(m, r, s, q) },
                { "record_failed", (m, r, s, q) => new RecordFailedException(m, r, s, q) },
                { "internal_error", (m, r, s, q) => new InternalErrorException(m, r, s, q) },
            };

        /// <summary>The protocol-v1 error codes (bridge/protocol.py ERROR_CODES), in their order.</summary>
        public static IEnumerable<string> KnownCodes => ByCode.Keys;

        /// <summary>The exception for one error reply; an undocumented code still yields the base type.</summary>
        public static DaemonErrorException From(string code, string message, long? req, string session, long? seq)
        {
            Func<string, long?, string, long?, DaemonErrorException> make;
            if (code == WorkerLostException.CodeName) return new WorkerLostException(message, req, session, seq);
            return ByCode.TryGetValue(code, out make) ? make(message, req, session, seq)
                                                      : new DaemonErrorException(code, message, req, session, seq);
        }
    }

    public sealed class BadMsgpackException : DaemonErrorException { public BadMsgpackException(string m, long? r, string s, long? q) : base("bad_msgpack", m, r, s, q) { } }
    public sealed class TooLargeException : DaemonErrorException { public TooLargeException(string m, long? r, string s, long? q) : base("too_large", m, r, s, q) { } }
    public sealed class BadVersionException : DaemonErrorException { public BadVersionException(string m, long? r, string s, long? q) : base("bad_version", m, r, s, q) { } }
    public sealed class UnknownTypeException : DaemonErrorException { public UnknownTypeException(string m, long? r, string s, long? q) : base("unknown_type", m, r, s, q) { } }
    public sealed class BadFieldException : DaemonErrorException { public BadFieldException(string m, long? r, string s, long? q) : base("bad_field", m, r, s, q) { } }
    public sealed class LimitExceededException : DaemonErrorException { public LimitExceededException(string m, long? r, string s, long? q) : base("limit_exceeded", m, r, s, q) { } }
    public sealed class TooManySessionsException : DaemonErrorException { public TooManySessionsException(string m, long? r, string s, long? q) : base("too_many_sessions", m, r, s, q) { } }
    public sealed class UnknownSessionException : DaemonErrorException { public UnknownSessionException(string m, long? r, string s, long? q) : base("unknown_session", m, r, s, q) { } }
    public sealed class BadSlotException : DaemonErrorException { public BadSlotException(string m, long? r, string s, long? q) : base("bad_slot", m, r, s, q) { } }
    public sealed class BadSeqException : DaemonErrorException { public BadSeqException(string m, long? r, string s, long? q) : base("bad_seq", m, r, s, q) { } }
    public sealed class SizeMismatchException : DaemonErrorException { public SizeMismatchException(string m, long? r, string s, long? q) : base("size_mismatch", m, r, s, q) { } }
    public sealed class NonFiniteException : DaemonErrorException { public NonFiniteException(string m, long? r, string s, long? q) : base("non_finite", m, r, s, q) { } }
    public sealed class UnsupportedException : DaemonErrorException { public UnsupportedException(string m, long? r, string s, long? q) : base("unsupported", m, r, s, q) { } }
    public sealed class RendererErrorException : DaemonErrorException { public RendererErrorException(string m, long? r, string s, long? q) : base("renderer_error", m, r, s, q) { } }
    /// <summary>Daemons with a worker pool (serve --workers / --gpus, docs/protocol.md section 7c): the
    /// render worker hosting the session died and the session is gone. Not in v1's ERROR_CODES table.
    /// The client reopens the session (on a live worker) by itself.</summary>
    public sealed class WorkerLostException : DaemonErrorException
    {
        public const string CodeName = "worker_lost";
        public WorkerLostException(string m, long? r, string s, long? q) : base(CodeName, m, r, s, q) { }
    }
    /// <summary>Recording stopped (disk full, directory not writable); the session goes on. Session.RecordError.</summary>
    public sealed class RecordFailedException : DaemonErrorException { public RecordFailedException(string m, long? r, string s, long? q) : base("record_failed", m, r, s, q) { } }
    /// <summary>A bug in the daemon while handling the message (it may be half applied); the daemon goes on.</summary>
    public sealed class InternalErrorException : DaemonErrorException { public InternalErrorException(string m, long? r, string s, long? q) : base("internal_error", m, r, s, q) { } }
}
