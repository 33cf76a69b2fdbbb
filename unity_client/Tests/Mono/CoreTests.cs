// Tests of the plain-C# core, run under mono against a real `neurender serve` (passthrough
// backend) by tests/test_unity_core.py. One line per test on stdout: "PASS name detail" or
// "FAIL name: exception"; exit code = number of failures. The pytest side also reads the files
// this program writes under --out (float16 reference vectors, a submitted frame and its output)
// and checks them against numpy and the passthrough backend itself.
//
//   mono CoreTests.exe --offline --out DIR
//   mono CoreTests.exe --endpoint ipc://.../daemon.sock --out DIR
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Neurender.Core;

static class CoreTests
{
    static int _failures;
    static string _out = ".", _endpoint;
    const int W = 64, H = 48;

    static int Main(string[] args)
    {
        string endpoint = null, serverKey = null, clientPublic = null, clientSecret = null;
        bool offline = false;
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--endpoint") endpoint = args[++i];
            else if (args[i] == "--out") _out = args[++i];
            else if (args[i] == "--offline") offline = true;
            else if (args[i] == "--curve") { serverKey = args[++i]; clientPublic = args[++i]; clientSecret = args[++i]; }
        }
        _endpoint = endpoint;
        if (args.Contains("--hold"))
        {
            // Open a session, render one frame, then wait to be killed: the pytest side checks that
            // the daemon notices the death through the liveness flock, long before its timeout.
            var c = new NeurenderClient(new ClientOptions { Endpoint = endpoint, RequestTimeoutMs = 10000 });
            c.Connect();
            Session s = c.Open(Config());
            _scratch = new byte[W * H * 6];
            RenderOne(s, 1, Action(1));
            Console.WriteLine("HOLDING shm=" + s.Info.ShmPath);
            Console.Out.Flush();
            while (true) { c.Pump(50); }
        }
        int rec = Array.IndexOf(args, "--record");
        if (rec >= 0)
        {
            Test("record_session", () => RecordSession(args[rec + 1]));
            Console.WriteLine("DONE failures=" + _failures);
            return _failures;
        }
        if (args.Contains("--worker-lost"))
        {
            Test("worker_lost_recovery", WorkerLost);
            Console.WriteLine("DONE failures=" + _failures);
            return _failures;
        }
        if (serverKey != null)
        {
            Test("curve_allowed_client", () => CurveAllowed(endpoint, new CurveKeys { ServerPublic = serverKey, ClientPublic = clientPublic, ClientSecret = clientSecret }));
            Test("curve_unknown_client_refused", () => CurveRefused(endpoint, CurveKeys.Generate(serverKey)));
            Test("curve_wrong_server_key_refused", () => CurveRefused(endpoint, new CurveKeys { ServerPublic = CurveKeys.Generate(serverKey).ClientPublic, ClientPublic = clientPublic, ClientSecret = clientSecret }));
            Console.WriteLine("DONE failures=" + _failures);
            return _failures;
        }
        Console.WriteLine("INFO action_layout " + string.Join(",", ActionLayout.Names));
        Console.WriteLine("INFO error_codes " + string.Join(",", DaemonErrorException.KnownCodes));
        Console.WriteLine("INFO constants_layout " + string.Join(",", CameraConstantsLayout.Entries.Select(e => e.Key + ":" + e.Value)));
        Test("msgpack_roundtrip", MsgPackRoundtrip);
        Test("msgpack_rejects_malformed", MsgPackRejectsMalformed);
        Test("half_vectors_written", HalfVectors);
        Test("repack_flip", RepackFlip);
        Test("daemon_notices_decoded", DaemonNoticesDecoded);
        if (offline) return _failures;

        Console.WriteLine("INFO libzmq " + ZmqContext.Version + " curve=" + ZmqContext.HasCurve);
        var options = new ClientOptions { Endpoint = endpoint, ClientName = "unity-core-tests", RequestTimeoutMs = 10000, LostAfterMs = 3000, ReconnectIntervalMs = 300 };
        using (var client = new NeurenderClient(options))
        {
            Session session = null;
            Test("connect", () =>
            {
                Welcome w = client.Connect();
                Check(w.Pid > 0, "pid");
                Check((string)w.Renderer["backend"] == "passthrough", "backend " + w.Renderer["backend"]);
                Check(w.HeartbeatMs > 0 && w.SessionTimeoutMs > w.HeartbeatMs, "heartbeat fields");
                return $"pid={w.Pid} heartbeat_ms={w.HeartbeatMs}";
            });
            Test("open_session", () =>
            {
                session = client.Open(Config());
                Opened o = session.Info;
                Check(o.Transport == "shm" && o.Slots == 3 && o.Width == W && o.Height == H, "opened fields");
                Check(o.Channels.Length == 2 && o.Channels[0].Name == "color" && o.Channels[0].Nbytes == W * H * 3 * 2, "color layout");
                Check(o.Channels[1].Name == "depth" && o.Channels[1].Nbytes == W * H * 4, "depth layout");
                Check(o.Output.Nbytes == W * H * 4 && o.Output.Dtype == "uint8", "output layout");
                Check(File.Exists(o.ShmPath) && File.Exists(o.LockPath), "session files exist");
                return $"session={o.Session} shm_size={o.ShmSize} lock={o.LockPath}";
            });
            if (session == null) return _failures + 1;
            Test("frames_200_changing_actions", () => Frames200(session));
            Test("pipelined_frames_each_seq_answered_once", () => Pipelined(client, session));
            Test("prompt_change", () => PromptChange(client, session));
            Test("reset", () =>
            {
                session.Reset();
                var r = RenderOne(session, 7, Action(3));
                return $"seq={r.Seq} status={r.Status}";
            });
            Test("malformed_requests_typed_errors", () => Malformed(client, session));
            Test("open_refused_typed_errors", () => OpenRefused(client));
            Test("client_side_bad_input", () => ClientSideBadInput(session));
            Test("stalled_thread_kept_alive_by_heartbeat_thread", () => Stall(client, session, true));
            Test("stalled_thread_without_heartbeat_thread_loses_session", () => Stall(null, null, false));
            Test("inline_transport", () => Inline(client));
            // Back at once: libzmq reconnects the socket, the pong names our session unknown.
            Test("daemon_restart_recovery", () => Restart(client, session, 0));
            // Gone longer than LostAfterMs: the client notices the silence, reconnects with a new socket.
            Test("daemon_down_reconnect", () => Restart(client, session, 4500));
            Test("close", () =>
            {
                string path = session.Info.LockPath; // ShmPath is a /proc fd link: its number is reused
                session.Close();
                Check(session.IsClosed, "closed flag");
                bool threw = false;
                try { session.Submit(0, null); } catch (InvalidOperationException) { threw = true; }
                Check(threw, "submit after close must throw");
                var until = DateTime.UtcNow.AddSeconds(5);
                while (File.Exists(path) && DateTime.UtcNow < until) System.Threading.Thread.Sleep(20);
                Check(!File.Exists(path), "daemon did not unlink " + path);
                return "lock file unlinked";
            });
        }
        Console.WriteLine("DONE failures=" + _failures);
        return _failures;
    }

    // ---- harness -------------------------------------------------------------------------------

    static void Test(string name, Func<string> body)
    {
        var t0 = DateTime.UtcNow;
        try
        {
            string detail = body();
            Console.WriteLine($"PASS {name} {detail} ({(DateTime.UtcNow - t0).TotalMilliseconds:F0} ms)");
        }
        catch (Exception e)
        {
            _failures++;
            Console.WriteLine($"FAIL {name}: {e.GetType().Name}: {e.Message.Replace('\n', ' ')}");
            Console.Error.WriteLine(e);
        }
        Console.Out.Flush();
    }

    static void Check(bool ok, string what)
    {
        if (!ok) throw new Exception("check failed: " + what);
    }

    static T Expect<T>(Action a) where T : Exception
    {
        try { a(); }
        catch (T e) { return e; }
        throw new Exception("expected " + typeof(T).Name);
    }

    // ---- offline -------------------------------------------------------------------------------

    static string MsgPackRoundtrip()
    {
        var map = new OrderedMap();
        map.Add("nil", null);
        map.Add("t", true);
        map.Add("ints", new List<object> { 0L, 127L, 128L, 255L, 256L, 65535L, 65536L, 4294967295L, 4294967296L, long.MaxValue,
                                          -1L, -32L, -33L, -128L, -129L, -32768L, -32769L, (long)int.MinValue, (long)int.MinValue - 1, long.MinValue });
        map.Add("u64", ulong.MaxValue);
        map.Add("f32", 1.5f);
        map.Add("f64", -2.25e300);
        map.Add("str", "h\u00e9llo \u6f22\u5b57");
        map.Add("long_str", new string('x', 300));
        map.Add("bin", Enumerable.Range(0, 70000).Select(i => (byte)i).ToArray());
        map.Add("arr16", Enumerable.Range(0, 20).Select(i => (object)(long)i).ToList());
        var big = new Dictionary<string, object>();
        for (int i = 0; i < 20; i++) big["k" + i] = (long)i;
        map.Add("map16", big);
        map.Add("ext", new MsgPackExt(5, new byte[] { 1, 2, 3 }));
        byte[] packed = MsgPackWriter.Pack(map);
        var back = (Dictionary<string, object>)MsgPackReader.Unpack(packed);
        Check(back["nil"] == null && (bool)back["t"], "nil/bool");
        var ints = (List<object>)back["ints"];
        var want = (List<object>)map[2].Value;
        for (int i = 0; i < want.Count; i++) Check((long)ints[i] == (long)want[i], "int " + want[i]);
        Check((ulong)back["u64"] == ulong.MaxValue, "u64");
        Check((double)back["f32"] == 1.5 && (double)back["f64"] == -2.25e300, "floats");
        Check((string)back["str"] == "h\u00e9llo \u6f22\u5b57" && ((string)back["long_str"]).Length == 300, "strings");
        Check(((byte[])back["bin"]).SequenceEqual((byte[])map[8].Value), "bin");
        Check(((List<object>)back["arr16"]).Count == 20 && ((Dictionary<string, object>)back["map16"]).Count == 20, "containers");
        var ext = (MsgPackExt)back["ext"];
        Check(ext.Type == 5 && ext.Data.SequenceEqual(new byte[] { 1, 2, 3 }), "ext");
        // Key order is kept (an OrderedMap is written as given), and the encoding is the shortest form.
        Check(MsgPackWriter.Pack(new OrderedMap { { "a", 1 } }).SequenceEqual(new byte[] { 0x81, 0xa1, 0x61, 0x01 }), "shortest encoding");
        File.WriteAllBytes(Path.Combine(_out, "msgpack_sample.bin"), packed);
        return $"{packed.Length} bytes";
    }

    // progress, session_closed and frame_done.repaired as the daemon sends them (docs/protocol.md 4)
    static string DaemonNoticesDecoded()
    {
        Func<OrderedMap, Reply> dec = m => Protocol.Decode(new List<byte[]> { MsgPackWriter.Pack(m) });
        var p = new OrderedMap { { "v", 1 }, { "type", "progress" }, { "session", "ab" }, { "req", 7 },
                                 { "stage", "opening" }, { "message", "encoding" }, { "elapsed_ms", 1500 } };
        var pr = (Progress)dec(p);
        Check(pr.Session == "ab" && pr.Req == 7 && pr.Seq == null && pr.Stage == "opening" && pr.ElapsedMs == 1500, "progress");
        var c = new OrderedMap { { "v", 1 }, { "type", "session_closed" }, { "session", "ab" },
                                 { "reason", "client key revoked" }, { "dropped", new List<object> { 3L, 4L } } };
        var sc = (SessionClosed)dec(c);
        Check(sc.Session == "ab" && sc.Reason == "client key revoked" && sc.Dropped.Length == 2 && sc.Dropped[1] == 4, "session_closed");
        var t = new OrderedMap { { "queue_ms", 0.1 }, { "render_ms", 0.2 }, { "daemon_ms", 0.3 } };
        var d = new OrderedMap { { "v", 1 }, { "type", "frame_done" }, { "session", "ab" }, { "seq", 5 }, { "slot", 1 },
                                 { "dropped", new List<object>() }, { "timings", t }, { "repaired", 2 } };
        Check(((FrameDone)dec(d)).Repaired == 2, "frame_done.repaired");
        return "ok";
    }

    static string MsgPackRejectsMalformed()
    {
        var cases = new Dictionary<string, byte[]>
        {
            { "empty", new byte[0] },
            { "truncated_str", new byte[] { 0xa5, 0x61 } },
            { "truncated_int", new byte[] { 0xcd, 0x01 } },
            { "trailing", new byte[] { 0x01, 0x02 } },
            { "reserved_c1", new byte[] { 0xc1 } },
            { "bad_utf8", new byte[] { 0xa2, 0xff, 0xfe } },
            { "huge_array", new byte[] { 0xdd, 0x7f, 0xff, 0xff, 0xff } },
            { "huge_bin", new byte[] { 0xc6, 0x7f, 0xff, 0xff, 0xff } },
            { "non_string_key", new byte[] { 0x81, 0x01, 0x02 } },
            { "duplicate_key", new byte[] { 0x82, 0xa1, 0x61, 0x01, 0xa1, 0x61, 0x02 } },
            { "deep_nesting", Enumerable.Repeat((byte)0x91, 100).Concat(new byte[] { 0xc0 }).ToArray() },
        };
        foreach (var kv in cases)
        {
            try { MsgPackReader.Unpack(kv.Value); }
            catch (MsgPackException) { continue; }
            throw new Exception("accepted malformed msgpack: " + kv.Key);
        }
        // A daemon reply that is valid msgpack but not a valid reply is a ProtocolViolationException.
        Expect<ProtocolViolationException>(() => Protocol.Decode(new List<byte[]> { MsgPackWriter.Pack(new OrderedMap { { "v", 2 }, { "type", "pong" } }) }));
        Expect<ProtocolViolationException>(() => Protocol.Decode(new List<byte[]> { MsgPackWriter.Pack(new OrderedMap { { "v", 1 }, { "type", "pong" } }) }));
        Expect<ProtocolViolationException>(() => Protocol.Decode(new List<byte[]> { new byte[] { 0x93, 1, 2, 3 } }));
        return "rejected: " + string.Join(",", cases.Keys) + ",reply_v2,reply_missing_field,reply_not_map";
    }

    // float32 bits -> our float16 bits, for every class of value; pytest compares with numpy.
    static string HalfVectors()
    {
        var vals = new List<float> { 0f, -0f, 1f, -1f, 0.5f, 65504f, 65520f, 1e6f, -1e6f, 6e-8f, 3e-8f, 2.9802322e-8f, 5.9604645e-8f,
                                     6.1035156e-5f, 6.0975552e-5f, float.PositiveInfinity, float.NegativeInfinity, float.NaN,
                                     1.0009766f, 1.00048828125f, 1.00146484375f, 0.33333334f, 2047.5f, 2048.5f };
        var rng = new Random(1234);
        for (int i = 0; i < 5000; i++)
        {
            double mag = Math.Pow(2, rng.Next(-30, 20));
            vals.Add((float)((rng.NextDouble() * 2 - 1) * mag));
        }
        using (var f = new BinaryWriter(File.Create(Path.Combine(_out, "half_vectors.bin"))))
            foreach (float v in vals) { f.Write(v); f.Write(Half.FromFloat(v)); }
        foreach (float v in vals)
        {
            if (float.IsNaN(v)) { Check(float.IsNaN(Half.ToFloat(Half.FromFloat(v))), "NaN"); continue; }
            float back = Half.ToFloat(Half.FromFloat(v));
            Check(Half.FromFloat(back) == Half.FromFloat(v), "round trip " + v);
        }
        return $"{vals.Count} values";
    }

    static string RepackFlip()
    {
        // 3x2 image, 4 components of 2 bytes -> 3 components, rows flipped.
        int w = 3, h = 2;
        var src = new byte[w * h * 8];
        for (int i = 0; i < src.Length; i++) src[i] = (byte)i;
        var dst = new byte[w * h * 6];
        PixelCopy.Repack(src, 0, w, h, 4, dst, 0, 3, 2, true);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int b = 0; b < 6; b++)
                    Check(dst[(y * w + x) * 6 + b] == src[((h - 1 - y) * w + x) * 8 + b], $"pixel {x},{y}");
        // 1 -> 2 components with a fill value, no flip.
        var one = new byte[] { 10, 20, 30, 40, 50, 60 };
        var two = new byte[12];
        PixelCopy.Repack(one, 0, 3, 2, 1, two, 0, 2, 1, false, new byte[] { 99 });
        Check(two.SequenceEqual(new byte[] { 10, 99, 20, 99, 30, 99, 40, 99, 50, 99, 60, 99 }), "widen with fill");
        Expect<ArgumentException>(() => PixelCopy.Repack(one, 0, 4, 2, 1, two, 0, 2, 1, false));
        return "ok";
    }

    // ---- against the daemon --------------------------------------------------------------------

    // Recording: 10 frames whose colour is k/100 and whose own finished frame ("final") is 1 - k/100
    // (float16), action Action(k), dt 1/50 s; pytest reads the daemon's dataset back and checks all of it.
    static string RecordSession(string name)
    {
        var c = new NeurenderClient(new ClientOptions { Endpoint = _endpoint, RequestTimeoutMs = 10000 });
        c.Connect();
        var cfg = new SessionConfig { Width = W, Height = H, OutputFormat = "rgba8", Slots = 3, Record = name }
            .Channel("color", "float16").Channel("final", "float16");
        Session s = c.Open(cfg);
        var color = new byte[W * H * 6];
        var final = new byte[W * H * 6];
        for (int k = 0; k < 10; k++)
        {
            ushort hc = Half.FromFloat(k / 100f), hf = Half.FromFloat(1 - k / 100f);
            for (int i = 0; i < W * H * 3; i++)
            {
                color[2 * i] = (byte)hc; color[2 * i + 1] = (byte)(hc >> 8);
                final[2 * i] = (byte)hf; final[2 * i + 1] = (byte)(hf >> 8);
            }
            int slot = s.AcquireSlot();
            s.WriteChannel(slot, "color", color);
            s.WriteChannel(slot, "final", final);
            s.Submit(slot, Action(k), new Dictionary<string, float[]> { { "dt", new[] { 0.02f } } });
            s.NextResult(10000).ThrowIfFailed();
        }
        Check(s.RecordError == null, "no record error");
        s.Close();
        c.Dispose();
        return "frames=10 look=" + name;
    }

    static SessionConfig Config() => new SessionConfig { Width = W, Height = H, OutputFormat = "rgba8", Slots = 3, Prompt = "photoreal" }
        .Channel("color", "float16").Channel("depth", "float32");

    static float[] Action(int i)
    {
        var a = new float[ActionLayout.Dim];
        a[ActionLayout.Index("forward")] = i % 2;
        a[ActionLayout.Index("left")] = (i / 3) % 2;
        a[ActionLayout.Index("jump")] = i % 7 == 0 ? 1 : 0;
        a[ActionLayout.Index("mouse_dx")] = (float)Math.Sin(i * 0.1) * 3;
        a[ActionLayout.Index("mouse_dy")] = (float)Math.Cos(i * 0.1);
        return a;
    }

    // Color as a Unity readback would deliver it: RGBA half, bottom row first. The core drops
    // alpha and flips rows on the way into the slot.
    static byte[] ReadbackColor(int frame)
    {
        var rng = new Random(frame * 7919 + 1);
        var px = new byte[W * H * 4 * 2];
        for (int i = 0; i < W * H * 4; i++)
        {
            // values slightly outside [0, 1] check the daemon's clipping too
            float v = (float)(rng.NextDouble() * 1.2 - 0.1);
            ushort h = Half.FromFloat(v);
            px[2 * i] = (byte)h; px[2 * i + 1] = (byte)(h >> 8);
        }
        return px;
    }

    // What passthrough returns for a float16 color: clip to [0, 1], *255, +0.5, truncate; alpha 255.
    static byte[] ExpectedOutput(byte[] readback)
    {
        var exp = new byte[W * H * 4];
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
            {
                int sy = H - 1 - y;
                for (int c = 0; c < 3; c++)
                {
                    int s = ((sy * W + x) * 4 + c) * 2;
                    float f = Half.ToFloat((ushort)(readback[s] | readback[s + 1] << 8));
                    f = Math.Min(1f, Math.Max(0f, float.IsNaN(f) ? 0f : f));
                    exp[(y * W + x) * 4 + c] = (byte)(f * 255f + 0.5f);
                }
                exp[(y * W + x) * 4 + 3] = 255;
            }
        return exp;
    }

    static byte[] _scratch;

    // A full set of camera constants, as the Unity layer sends with every frame.
    static Dictionary<string, float[]> Constants(int frame)
    {
        var c = new Dictionary<string, float[]>();
        foreach (var e in CameraConstantsLayout.Entries)
        {
            var v = new float[e.Value];
            for (int i = 0; i < v.Length; i++) v[i] = (float)Math.Sin(frame + i) * (i % 5 == 0 ? 1 : 10);
            c[e.Key] = v;
        }
        CameraConstantsLayout.Validate(c);
        return c;
    }

    static FrameResult RenderOne(Session s, int frame, float[] action, bool dump = false)
    {
        int slot = s.AcquireSlot();
        Check(slot >= 0, "a free slot");
        byte[] rb = ReadbackColor(frame);
        PixelCopy.RepackToChannel(s, slot, "color", rb, 4, true, _scratch);
        var depth = new byte[W * H * 4];
        for (int i = 0; i < W * H; i++) BitConverter.GetBytes(1f + i % 50).CopyTo(depth, 4 * i);
        s.WriteChannel(slot, "depth", depth);
        long seq = s.Submit(slot, action, frame % 2 == 0 ? Constants(frame) : null);
        Check(seq >= 0, "submit queued");
        FrameResult r = s.NextResult(10000);
        Check(r != null, "a result within 10 s");
        Check(r.Seq == seq && r.Slot == slot, $"result for seq {seq}, got {r.Seq}");
        r.ThrowIfFailed();
        Check(r.Status == FrameStatus.Done, "status " + r.Status);
        var got = new byte[s.Info.Output.Nbytes];
        s.ReadOutput(slot, got);
        byte[] exp = ExpectedOutput(rb);
        for (int i = 0; i < exp.Length; i++)
            if (got[i] != exp[i]) throw new Exception($"frame {frame}: output byte {i} is {got[i]}, passthrough gives {exp[i]}");
        if (dump)
        {
            var color = new byte[W * H * 6];
            PixelCopy.Repack(rb, 0, W, H, 4, color, 0, 3, 2, true);
            File.WriteAllBytes(Path.Combine(_out, "frame_color_f16.bin"), color);
            File.WriteAllBytes(Path.Combine(_out, "frame_output_rgba8.bin"), got);
        }
        return r;
    }

    static string Frames200(Session s)
    {
        _scratch = new byte[W * H * 6];
        var lat = new List<double>();
        var daemon = new List<double>();
        for (int i = 0; i < 200; i++)
        {
            var r = RenderOne(s, i, Action(i), dump: i == 199);
            // The client's round trip contains the daemon's receipt-to-reply time.
            Check(r.LatencyMs >= r.DaemonMs && r.DaemonMs >= r.RenderMs && r.RenderMs >= 0, $"timings of seq {r.Seq}: latency {r.LatencyMs} daemon {r.DaemonMs} render {r.RenderMs} queue {r.QueueMs}");
            lat.Add(r.LatencyMs);
            daemon.Add(r.DaemonMs);
        }
        lat.Sort();
        daemon.Sort();
        Check(s.Stats.Done >= 200 && s.Stats.LatencyQuantile(0.5) > 0, "stats");
        return $"200 frames, pixels exact; round trip p50={lat[100]:F2} ms max={lat[199]:F2} ms, daemon p50={daemon[100]:F2} ms";
    }

    // Submits as fast as slots allow: the daemon drops waiting frames when newer ones arrive, and
    // every seq must come back exactly once (done, dropped or failed), in increasing order.
    static string Pipelined(NeurenderClient client, Session s)
    {
        var sent = new List<long>();
        var answered = new Dictionary<long, FrameStatus>();
        long lastSeq = -1;
        int frame = 1000;
        var until = DateTime.UtcNow.AddSeconds(20);
        while ((sent.Count < 60 || answered.Count < sent.Count) && DateTime.UtcNow < until)
        {
            client.Pump(1);
            FrameResult r;
            while (s.TryGetResult(out r))
            {
                Check(!answered.ContainsKey(r.Seq), $"seq {r.Seq} answered twice");
                Check(r.Status == FrameStatus.Done || r.Status == FrameStatus.Dropped, $"seq {r.Seq}: {r.Status} {r.Error}");
                if (r.Status == FrameStatus.Done) { Check(r.Seq > lastSeq, "done results in seq order"); lastSeq = r.Seq; }
                answered[r.Seq] = r.Status;
            }
            if (sent.Count >= 60) continue;
            int slot = s.AcquireSlot();
            if (slot < 0) continue;
            PixelCopy.RepackToChannel(s, slot, "color", ReadbackColor(frame++), 4, true, _scratch);
            long seq = s.Submit(slot, Action(frame));
            Check(seq >= 0, "queued");
            sent.Add(seq);
        }
        Check(answered.Count == sent.Count && sent.All(answered.ContainsKey), $"{sent.Count} sent, {answered.Count} answered");
        int dropped = answered.Values.Count(v => v == FrameStatus.Dropped);
        return $"{sent.Count} frames, {sent.Count - dropped} done, {dropped} dropped by the daemon";
    }

    static string PromptChange(NeurenderClient client, Session s)
    {
        s.SetPrompt("oil painting, thick brush strokes");
        var r = RenderOne(s, 300, Action(300));
        Check(s.Config.Prompt == "oil painting, thick brush strokes", "prompt recorded for reopen");
        // The prompt really travels with the frame: one above the daemon's limit is refused for that seq.
        int max = Convert.ToInt32(client.Welcome.Limits["max_prompt_chars"]);
        s.SetPrompt(new string('p', max + 1));
        int slot = s.AcquireSlot();
        long seq = s.Submit(slot, Action(301));
        FrameResult bad = s.NextResult(10000);
        Check(bad != null && bad.Seq == seq && bad.Status == FrameStatus.Failed, "over-long prompt refused");
        Check(bad.Error is LimitExceededException, "typed LimitExceededException, got " + bad.Error?.GetType().Name);
        Check(bad.Slot == slot, "slot reclaimed");
        Check(s.Config.Prompt == new string('p', max + 1), "config follows the last sent prompt");
        s.SetPrompt("oil painting, thick brush strokes");
        RenderOne(s, 302, Action(302));
        return $"prompt frame seq={r.Seq} done; over-long prompt -> {bad.Error.Code}";
    }

    static string Malformed(NeurenderClient client, Session s)
    {
        var seen = new List<string>();
        Func<DaemonErrorException> awaitError = () =>
        {
            var until = DateTime.UtcNow.AddSeconds(10);
            while (DateTime.UtcNow < until)
            {
                client.Pump(10);
                var e = client.TakeError();
                if (e != null)
                {
                    if (e is DaemonErrorException) return (DaemonErrorException)e;
                    throw e;
                }
            }
            throw new Exception("no error reply within 10 s");
        };
        Action<byte[], Type> raw = (header, type) =>
        {
            Check(client.SendRaw(new List<byte[]> { header }), "raw send");
            var e = awaitError();
            Check(e.GetType() == type, $"expected {type.Name}, got {e.GetType().Name} ({e.Code}: {e.DaemonMessage})");
            seen.Add(e.Code);
        };
        raw(new byte[] { 0xc1, 0x00, 0xff }, typeof(BadMsgpackException)); // 0xc1 is never valid
        raw(new byte[] { 0x92, 0x01, 0x02 }, typeof(BadMsgpackException)); // an array, not a map
        raw(new byte[] { 0x81, 0xa1, 0x76 }, typeof(BadMsgpackException)); // truncated map
        raw(MsgPackWriter.Pack(new OrderedMap { { "v", 2 }, { "type", "hello" } }), typeof(BadVersionException));
        raw(MsgPackWriter.Pack(new OrderedMap { { "v", 1 }, { "type", "teleport" } }), typeof(UnknownTypeException));
        raw(MsgPackWriter.Pack(new OrderedMap { { "v", 1 }, { "type", "hello" }, { "color", "blue" } }), typeof(BadFieldException));
        raw(MsgPackWriter.Pack(new OrderedMap { { "v", 1 }, { "type", "hello" }, { "client", new string('x', 70000) } }), typeof(TooLargeException));
        raw(Protocol.Frame("0000000000000000", 1, 0, null, null, false, null), typeof(UnknownSessionException));

        // Through the normal API: errors that carry the frame's seq come back as that frame's result.
        Func<float[], Dictionary<string, float[]>, DaemonErrorException> frameError = (action, constants) =>
        {
            int slot = s.AcquireSlot();
            long seq = s.Submit(slot, action, constants);
            var r = s.NextResult(10000);
            Check(r != null && r.Seq == seq && r.Status == FrameStatus.Failed, "frame refused");
            Check(r.Slot == slot, "slot reclaimed after the error");
            seen.Add(r.Error.Code);
            return r.Error;
        };
        Check(frameError(new float[3], null) is SizeMismatchException, "short action -> SizeMismatchException");
        var nan = Action(1); nan[0] = float.NaN;
        Check(frameError(nan, null) is NonFiniteException, "NaN action -> NonFiniteException");
        Check(frameError(null, new Dictionary<string, float[]> { { "fov_y_deg", new float[] { 60, 61 } } }) is SizeMismatchException, "constants length");
        Check(frameError(null, new Dictionary<string, float[]> { { "warp_factor", new float[] { 1 } } }) is BadFieldException, "unknown constant");

        // A seq the daemon has already seen, and a slot it does not have: raw frames on our session.
        raw(Protocol.Frame(s.Id, 0, 0, null, null, false, null), typeof(BadSeqException));
        raw(Protocol.Frame(s.Id, 1L << 40, 9, null, null, false, null), typeof(BadSlotException));

        // The session survived all of it.
        var ok = RenderOne(s, 400, Action(400), false);
        // The typed exceptions are thrown where callers meet them.
        Expect<SizeMismatchException>(() =>
        {
            int slot = s.AcquireSlot();
            s.Submit(slot, new float[2]);
            s.NextResult(10000).ThrowIfFailed();
        });
        return "typed: " + string.Join(",", seen) + $"; session still renders (seq {ok.Seq})";
    }

    static string OpenRefused(NeurenderClient client)
    {
        var e1 = Expect<LimitExceededException>(() => client.Open(new SessionConfig { Width = 100000, Height = 10 }.Channel("color", "uint8")));
        var e2 = Expect<BadFieldException>(() => client.Open(new SessionConfig { Width = 8, Height = 8 }.Channel("depth", "uint8")));
        var e3 = Expect<BadFieldException>(() => client.Open(new SessionConfig { Width = 8, Height = 8 }));
        var e4 = Expect<BadFieldException>(() => client.Open(new SessionConfig { Width = 8, Height = 8, OutputFormat = "jpeg" }.Channel("color", "uint8")));
        Check(e1.Req.HasValue && e2.Req.HasValue, "errors carry the open's req");
        // Fill up to max_sessions, or the per-client cap when lower (one is open already), then one more is refused.
        int max = Convert.ToInt32(client.Welcome.Limits["max_sessions"]);
        if (client.Welcome.Limits.ContainsKey("max_sessions_per_client"))
            max = Math.Min(max, Convert.ToInt32(client.Welcome.Limits["max_sessions_per_client"]));
        var extra = new List<Session>();
        DaemonErrorException e5 = null;
        try
        {
            for (int i = 0; i < max && e5 == null; i++)
            {
                try { extra.Add(client.Open(new SessionConfig { Width = 8, Height = 8 }.Channel("color", "uint8"))); }
                catch (TooManySessionsException e) { e5 = e; }
            }
        }
        finally { foreach (var x in extra) x.Close(); }
        Check(e5 != null && extra.Count == max - 1, $"too_many_sessions after {max} sessions (opened {extra.Count} extra)");
        return string.Join(",", new DaemonErrorException[] { e1, e2, e3, e4, e5 }.Select(e => e.Code));
    }

    // Mistakes the core catches before anything reaches the wire or shared memory.
    static string ClientSideBadInput(Session s)
    {
        int slot = s.AcquireSlot();
        Expect<ArgumentException>(() => s.WriteChannel(slot, "color", new byte[10]));          // too few bytes
        Expect<ArgumentException>(() => s.WriteChannel(slot, "normals", new byte[W * H * 6]));  // not declared
        Expect<ArgumentOutOfRangeException>(() => s.WriteChannel(7, "depth", new byte[W * H * 4])); // no slot 7
        Expect<ArgumentOutOfRangeException>(() => s.Submit(-1, null));
        Expect<ArgumentException>(() => s.ReadOutput(slot, new byte[16]));
        Expect<InvalidOperationException>(() => s.SubmitInline(new List<byte[]>(), null));    // shm session
        s.ReleaseSlot(slot);
        // All slots taken: AcquireSlot says so instead of handing out a slot the daemon owns.
        var taken = new List<int>();
        int k;
        while ((k = s.AcquireSlot()) >= 0) taken.Add(k);
        Check(taken.Count == s.Info.Slots && taken.Distinct().Count() == taken.Count, "each slot once");
        foreach (int t in taken) s.ReleaseSlot(t);
        // A shared-memory view refuses ranges outside the mapping.
        using (var r = ShmRegion.Create(Path.Combine(_out, "region.shm"), 4096))
        {
            Expect<ArgumentOutOfRangeException>(() => r.Write(4090, new byte[8], 0, 8));
            Expect<ArgumentOutOfRangeException>(() => r.Read(-1, new byte[1], 0, 1));
            r.Write(4088, new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }, 0, 8);
            var back = new byte[8];
            r.Read(4088, back, 0, 8);
            Check(back.SequenceEqual(new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 }), "round trip");
        }
        ShmRegion.Unlink(Path.Combine(_out, "region.shm"));
        Expect<IOException>(() => ShmRegion.Open(s.Info.ShmPath, s.Info.ShmSize + 1)); // smaller than announced
        RenderOne(s, 450, Action(450)); // and the session is untouched
        return "short write, undeclared channel, bad slot, small output buffer, inline on shm, slot exhaustion, out-of-range shm access, short shm file";
    }

    // The owner thread sleeps for 3x the daemon's session timeout without calling Pump (a Unity
    // scene load). With the background heartbeat the session survives; without it, it is gone.
    static string Stall(NeurenderClient client, Session s, bool background)
    {
        NeurenderClient own = null;
        if (!background)
        {
            own = client = new NeurenderClient(new ClientOptions { Endpoint = _endpoint, BackgroundHeartbeat = false, RequestTimeoutMs = 10000, LostAfterMs = 3000 });
            client.Connect();
            s = client.Open(Config());
        }
        try
        {
            RenderOne(s, 600, Action(600));
            int gen = s.Generation;
            int stall = 3 * client.Welcome.SessionTimeoutMs;
            if (!background)
            {
                // First, idle but pumping: Pump's own pings alone keep the session.
                var idleUntil = DateTime.UtcNow.AddMilliseconds(stall);
                while (DateTime.UtcNow < idleUntil) client.Pump(20);
                Check(s.Generation == gen, "Pump's pings did not keep the idle session");
                RenderOne(s, 599, Action(599));
            }
            System.Threading.Thread.Sleep(stall);
            if (background)
            {
                RenderOne(s, 601, Action(601)); // straight away, no reopen
                Check(s.Generation == gen && s.Stats.Lost == 0, "the session was lost during the stall");
                return $"stalled {stall} ms, session kept";
            }
            // The daemon dropped it: the first frame after the stall fails, the client reopens, frames render again.
            int slot = s.AcquireSlot();
            long seq = s.Submit(slot, Action(602));
            FrameResult r = s.NextResult(10000);
            Check(r != null && r.Seq == seq && r.Status == FrameStatus.Lost, "the first frame after the stall is lost, got " + (r == null ? "none" : r.Status.ToString()));
            var until = DateTime.UtcNow.AddSeconds(10);
            while (s.Generation == gen && DateTime.UtcNow < until) client.Pump(10);
            Check(s.Generation == gen + 1, "reopened");
            RenderOne(s, 603, Action(603));
            return $"idle {stall} ms pumping: kept; stalled {stall} ms: timed out, reopened (generation {s.Generation})";
        }
        finally { if (own != null) own.Dispose(); }
    }

    static string Inline(NeurenderClient client)
    {
        var cfg = new SessionConfig { Width = 16, Height = 8, Transport = "inline", OutputFormat = "rgb8" }.Channel("color", "uint8");
        Session s = client.Open(cfg);
        try
        {
            Check(s.Info.ShmPath == null && s.Info.Transport == "inline", "no shm for inline");
            var color = new byte[16 * 8 * 3];
            for (int i = 0; i < color.Length; i++) color[i] = (byte)(i * 13);
            long seq = s.SubmitInline(new List<byte[]> { color }, Action(1));
            var r = s.NextResult(10000);
            Check(r != null && r.Seq == seq, "result");
            r.ThrowIfFailed();
            Check(r.Pixels != null && r.Pixels.SequenceEqual(color), "uint8 color comes back unchanged as rgb8");
            long seq2 = s.SubmitInline(new List<byte[]> { new byte[10] }, null);
            var bad = s.NextResult(10000);
            Check(bad.Seq == seq2 && bad.Error is SizeMismatchException, "short pixel frame -> SizeMismatchException");
        }
        finally { s.Close(); }
        return "inline round trip exact";
    }

    // A daemon with a worker pool (serve --workers 1): pytest kills the render worker hosting the
    // session; the client gets worker_lost (or a pong naming the session unknown), reopens the
    // session on the restarted worker and renders exact pixels again.
    static string WorkerLost()
    {
        using (var client = new NeurenderClient(new ClientOptions { Endpoint = _endpoint, RequestTimeoutMs = 10000, LostAfterMs = 3000, ReconnectIntervalMs = 300 }))
        {
            client.Connect();
            Session s = client.Open(Config());
            _scratch = new byte[W * H * 6];
            for (int i = 0; i < 3; i++) RenderOne(s, 700 + i, Action(i));
            Console.WriteLine("KILL_WORKER");
            Console.Out.Flush();
            var seen = new Dictionary<string, int>();
            var until = DateTime.UtcNow.AddSeconds(40);
            int frame = 710;
            while (DateTime.UtcNow < until)
            {
                client.Pump(5);
                FrameResult r;
                while (s.TryGetResult(out r))
                {
                    string k = r.Status == FrameStatus.Failed ? r.Error.Code : r.Status.ToString();
                    seen[k] = seen.TryGetValue(k, out int n) ? n + 1 : 1;
                    Check(r.Status != FrameStatus.Failed || r.Error is WorkerLostException, "unexpected error " + r.Error?.Code);
                }
                if (s.Generation > 0 && s.InFlightCount == 0)
                {
                    for (int i = 0; i < 3; i++) RenderOne(s, frame++, Action(i));
                    s.Close();
                    Check(seen.ContainsKey("worker_lost") || seen.ContainsKey("Lost"), "no frame reported lost");
                    return "recovered; results while the worker was gone: " + string.Join(",", seen.Select(kv => kv.Key + "=" + kv.Value));
                }
                int slot = s.AcquireSlot();
                if (slot >= 0)
                {
                    try { PixelCopy.RepackToChannel(s, slot, "color", ReadbackColor(frame++), 4, true, _scratch); s.Submit(slot, Action(frame)); }
                    catch (InvalidOperationException) { s.ReleaseSlot(slot); }
                }
                System.Threading.Thread.Sleep(10);
            }
            throw new Exception("no recovery within 40 s, results seen: " + string.Join(",", seen.Select(kv => kv.Key + "=" + kv.Value)));
        }
    }

    // ---- CURVE over TCP ------------------------------------------------------------------------

    static string CurveAllowed(string endpoint, CurveKeys keys)
    {
        using (var client = new NeurenderClient(new ClientOptions { Endpoint = endpoint, Curve = keys, RequestTimeoutMs = 10000 }))
        {
            Welcome w = client.Connect();
            // Over TCP the pixels travel inline (no shared memory across hosts).
            Session s = client.Open(new SessionConfig { Width = 16, Height = 8, Transport = "inline", OutputFormat = "rgba8" }.Channel("color", "uint8"));
            var color = new byte[16 * 8 * 3];
            for (int i = 0; i < color.Length; i++) color[i] = (byte)(255 - i);
            s.SubmitInline(new List<byte[]> { color }, Action(2));
            var r = s.NextResult(10000);
            Check(r != null, "a result");
            r.ThrowIfFailed();
            for (int p = 0; p < 16 * 8; p++)
            {
                for (int c = 0; c < 3; c++) Check(r.Pixels[p * 4 + c] == color[p * 3 + c], "pixel");
                Check(r.Pixels[p * 4 + 3] == 255, "alpha");
            }
            s.Close();
            return $"welcome from pid {w.Pid} over {endpoint}, inline frame exact";
        }
    }

    // A peer the daemon does not accept never reaches the daemon's logic: no reply at all.
    static string CurveRefused(string endpoint, CurveKeys keys)
    {
        using (var client = new NeurenderClient(new ClientOptions { Endpoint = endpoint, Curve = keys, RequestTimeoutMs = 1500 }))
        {
            Expect<DaemonTimeoutException>(() => client.Connect());
            Check(!client.Connected, "not connected");
        }
        return "no reply, DaemonTimeoutException";
    }

    // pytest watches for the RESTART line, kills the daemon (SIGKILL) and starts a new one on the
    // same runtime dir. The client keeps submitting and must come back by itself.
    static string Restart(NeurenderClient client, Session s, int downMs)
    {
        long oldPid = client.Welcome.Pid;
        string oldShm = s.Info.ShmPath;
        int gen0 = s.Generation;
        int reconnects0 = client.Reconnects, restarts0 = client.Restarts;
        Console.WriteLine($"RESTART pid={oldPid} down_ms={downMs}");
        Console.Out.Flush();
        var until = DateTime.UtcNow.AddSeconds(40);
        int frame = 500, attempts = 0;
        long lost0 = s.Stats.Lost;
        bool sawDisconnect = false;
        while (DateTime.UtcNow < until)
        {
            client.Pump(5);
            if (!client.Connected) sawDisconnect = true;
            FrameResult r;
            while (s.TryGetResult(out r)) { }
            if (s.Generation > gen0 && s.Info.ShmPath != oldShm && client.Connected)
            {
                // Recovered: frames render again, pixels exact.
                for (int i = 0; i < 5; i++) RenderOne(s, frame++, Action(frame));
                string how = sawDisconnect ? "silence -> reconnect" : "pong unknown -> reopen";
                Check(client.Welcome.Pid != oldPid && client.Restarts == restarts0 + 1, "the new daemon's welcome");
                Check(downMs == 0 || (sawDisconnect && client.Reconnects > reconnects0), "a long outage must be noticed as silence");
                return $"recovered after {attempts} frame attempts ({how}); reconnects={client.Reconnects} " +
                       $"generation={s.Generation} pid {oldPid}->{client.Welcome.Pid} lost={s.Stats.Lost - lost0} new shm={Path.GetFileName(s.Info.ShmPath)}";
            }
            int slot = s.AcquireSlot();
            if (slot >= 0)
            {
                try { PixelCopy.RepackToChannel(s, slot, "color", ReadbackColor(frame++), 4, true, _scratch); s.Submit(slot, Action(frame)); }
                catch (InvalidOperationException) { s.ReleaseSlot(slot); } // mapping gone while lost
                attempts++;
            }
            System.Threading.Thread.Sleep(10);
        }
        throw new Exception($"no recovery within 40 s (connected={client.Connected}, generation={s.Generation})");
    }
}
