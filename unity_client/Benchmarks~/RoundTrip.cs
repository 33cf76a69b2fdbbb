// Round-trip benchmark of the C# core against a running daemon: per frame, copy color (float16)
// and depth (float32) into the input slot, submit, wait for frame_done, copy the rgba8 output
// out. Prints one line "RESULT {json}". Driven by bench_roundtrip.py, which runs the Python
// client (bridge/client.py) on the same daemon, interleaved, for the side-by-side ratio.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using Neurender.Core;

static class RoundTrip
{
    static int Main(string[] args)
    {
        string endpoint = args[0];
        int w = int.Parse(args[1]), h = int.Parse(args[2]), frames = int.Parse(args[3]), warmup = int.Parse(args[4]);
        using (var client = new NeurenderClient(new ClientOptions { Endpoint = endpoint, ClientName = "bench-csharp" }))
        {
            client.Connect();
            Session s = client.Open(new SessionConfig { Width = w, Height = h, OutputFormat = "rgba8", Slots = 3 }
                                    .Channel("color", "float16").Channel("depth", "float32"));
            var color = new byte[s.Channel("color").Nbytes];
            var depth = new byte[s.Channel("depth").Nbytes];
            new Random(1).NextBytes(color);
            for (int i = 1; i < color.Length; i += 2) color[i] &= 0x3b; // finite halves below 1
            var output = new byte[s.Info.Output.Nbytes];
            var action = new float[ActionLayout.Dim];
            var ms = new List<double>();
            var sw = new Stopwatch();
            for (int i = 0; i < warmup + frames; i++)
            {
                sw.Restart();
                int slot = s.AcquireSlot();
                s.WriteChannel(slot, "color", color);
                s.WriteChannel(slot, "depth", depth);
                action[0] = i % 2;
                s.Submit(slot, action);
                FrameResult r = s.NextResult(10000);
                if (r == null || r.Status != FrameStatus.Done) throw new Exception("frame failed: " + (r == null ? "timeout" : r.Status.ToString()));
                s.ReadOutput(r.Slot, output);
                sw.Stop();
                if (i >= warmup) ms.Add(sw.Elapsed.TotalMilliseconds);
            }
            s.Close();
            ms.Sort();
            Func<double, double> q = p => ms[Math.Min(ms.Count - 1, (int)Math.Round(p * (ms.Count - 1)))];
            Func<double, string> f = v => v.ToString("F4", CultureInfo.InvariantCulture);
            Console.WriteLine("RESULT {\"client\": \"csharp\", \"frames\": " + ms.Count + ", \"p50_ms\": " + f(q(0.5)) +
                              ", \"p95_ms\": " + f(q(0.95)) + ", \"mean_ms\": " + f(Average(ms)) + "}");
        }
        return 0;
    }

    static double Average(List<double> a) { double t = 0; foreach (var v in a) t += v; return t / a.Count; }
}
