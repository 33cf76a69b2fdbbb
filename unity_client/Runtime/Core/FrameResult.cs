// What became of one submitted frame. The daemon answers every seq exactly once (frame_done,
// a `dropped` entry, or an error carrying it); a daemon that died answers nothing, so the client
// reports those seqs as Lost when it reconnects.
using System;
using System.Collections.Generic;

namespace Neurender.Core
{
    public enum FrameStatus { Done, Dropped, Failed, Lost }

    public sealed class FrameResult
    {
        public long Seq;
        public int Slot;              // -1 in inline mode
        public FrameStatus Status;
        public DaemonErrorException Error; // Failed only
        public double LatencyMs;      // submit -> result, measured by the client
        public double QueueMs, RenderMs, DaemonMs; // Done only: the daemon's own timings
        public byte[] Pixels;         // Done in inline mode: the output image
        public long Repaired;         // Done only: NaN/inf input values the daemon replaced by 0

        /// <summary>Throws the typed daemon error of a Failed frame.</summary>
        public FrameResult ThrowIfFailed()
        {
            if (Status == FrameStatus.Failed) throw Error;
            return this;
        }
    }

    /// <summary>Counters for the HUD / editor window. Latencies keep the last Window samples.</summary>
    public sealed class SessionStats
    {
        public const int Window = 240;
        public long Submitted, Done, Dropped, Failed, Lost, SendFailures, NoFreeSlot, Reopened, Repaired;
        public double LastLatencyMs, LastRenderMs;
        readonly Queue<double> _latencies = new Queue<double>();

        internal void AddLatency(double ms)
        {
            LastLatencyMs = ms;
            _latencies.Enqueue(ms);
            while (_latencies.Count > Window) _latencies.Dequeue();
        }

        public double[] Latencies() => _latencies.ToArray();

        /// <summary>The q-quantile (0..1) of the recent latencies, NaN before the first frame.</summary>
        public double LatencyQuantile(double q)
        {
            var a = Latencies();
            if (a.Length == 0) return double.NaN;
            Array.Sort(a);
            return a[Math.Min(a.Length - 1, (int)Math.Round(q * (a.Length - 1)))];
        }
    }
}
