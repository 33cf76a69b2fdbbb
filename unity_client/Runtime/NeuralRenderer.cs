// Put this on a camera: every frame it captures the camera's color and G-buffer (depth, normals,
// motion vectors) into render textures, packs them on the GPU into the protocol's layout, copies
// them into a shared-memory input slot through AsyncGPUReadback (no main-thread stall; a frame or
// two of extra latency), sends the frame with the player's action and the prompt, and composites
// the newest returned frame over the camera image (replace, or blend by a factor).
//
// All protocol logic lives in Neurender.Core (plain C#, tested under mono against the real
// daemon); this class only moves pixels between the GPU and the core. Built-in pipeline: it hooks
// OnRenderImage. URP: add NeuralRendererFeature to the renderer asset (README.md).
using System;
using System.Collections.Generic;
using Neurender.Core;
using UnityEngine;
using UnityEngine.Rendering;

namespace Neurender
{
    public enum CompositeMode { Replace, Blend, Off }

    [RequireComponent(typeof(Camera))]
    [AddComponentMenu("neurender/Neural Renderer")]
    public sealed class NeuralRenderer : MonoBehaviour
    {
        [Header("Daemon")]
        [Tooltip("Empty: the local daemon (ipc://<runtime dir>/daemon.sock). Remote: tcp://HOST:PORT with the CURVE keys below.")]
        public string endpoint = "";
        [Tooltip("The daemon's server.key (Z85, 40 characters); only for tcp:// endpoints.")]
        public string serverPublicKey = "";
        public string clientPublicKey = "";
        public string clientSecretKey = "";

        [Header("Look")]
        [TextArea(2, 5)] public string prompt = "photorealistic, golden hour";
        [Tooltip("Sampler steps; 0 keeps the daemon's default. Changing it reopens the session.")]
        [Range(0, 16)] public int steps = 0;

        [Header("Channels sent every frame")]
        public bool sendColor = true;
        public bool sendDepth = true;
        public bool sendNormals = true;
        public bool sendMotion = true;
        [Tooltip("float16 keeps HDR and dark detail; uint8 halves the bytes.")]
        public bool colorAsFloat16 = true;

        [Header("Resolution and output")]
        [Tooltip("Capture size relative to the camera's pixel size.")]
        [Range(0.125f, 1f)] public float resolutionScale = 0.5f;
        [Tooltip("Frames between capture and result: readback (1-3 frames) + the daemon. 4 leaves one spare.")]
        [Range(1, 8)] public int slots = 4;
        public CompositeMode composite = CompositeMode.Replace;
        [Range(0f, 1f)] public float blend = 0.75f;

        [Tooltip("Read captured texture rows bottom-up (Unity's texture convention). Untick only if the daemon receives upside-down frames on your graphics API.")]
        public bool flipCapturedRows = true;

        [Header("Recording (train it on your own game)")]
        [Tooltip("Record this session on the daemon: the channels above, this camera's finished frame (the training target), actions and camera constants, for `neurender train --data DIR --look <look name>`.")]
        public bool record = false;
        [Tooltip("The look's name: the recording's directory under the daemon's recordings root, and the prompt that selects the look once a model is fine-tuned on it. Letters, digits, '-' and '_'.")]
        public string lookName = "my-game";

        [Header("Action")]
        public NeuralActionSource actionSource;

        // ---- state the editor window reads ----------------------------------------------------
        public NeurenderClient Client { get; private set; }
        public Session Session { get; private set; }
        public string Status { get; private set; } = "idle";
        public string LastError { get; private set; }
        /// <summary>Frames not sent because no slot was free or a readback failed.</summary>
        public long SkippedFrames { get; private set; }
        public Texture2D NeuralFrame => _output;

        Camera _camera;
        Material _captureMat, _compositeMat;
        ComputeShader _pack;
        readonly List<CaptureChannel> _channels = new List<CaptureChannel>();
        Texture2D _output;
        byte[] _outputBytes;
        string _sentPrompt;
        int _openedSteps, _openedWidth, _openedHeight;
        string _openedChannels;
        int _generation;
        Matrix4x4 _prevViewProj;
        bool _havePrev;
        CommandBuffer _builtinCmd;
        float _lastOpenAttempt = -10f;

        static readonly int SrcId = Shader.PropertyToID("_Src"), DstId = Shader.PropertyToID("_Dst");
        static readonly int WidthId = Shader.PropertyToID("_Width"), HeightId = Shader.PropertyToID("_Height");
        static readonly int ComponentsId = Shader.PropertyToID("_Components"), WordsId = Shader.PropertyToID("_Words");
        static readonly int GroupsXId = Shader.PropertyToID("_GroupsX"), FlipYId = Shader.PropertyToID("_FlipY");
        static readonly int WorldToViewId = Shader.PropertyToID("_NeurenderWorldToView"), SizeId = Shader.PropertyToID("_NeurenderSize");
        static readonly int NeuralTexId = Shader.PropertyToID("_NeuralTex"), BlendId = Shader.PropertyToID("_Blend");
        const int GroupsX = 1024;

        sealed class CaptureChannel
        {
            public string Name, Dtype;
            public int Components, Pass, Kernel, Words;
            public RenderTexture Texture;
            public ComputeBuffer Packed;
            public byte[] Scratch;
        }

        // One frame on its way from the GPU into an input slot (shm) or into its own byte arrays
        // (inline, for tcp:// daemons on another host).
        sealed class PendingFrame
        {
            public int Slot, Remaining, Generation;
            public bool Failed;
            public float[] Action;
            public Dictionary<string, float[]> Constants;
            public byte[][] Inline;
        }

        int _pendingInline; // inline frames between capture and submit

        static bool UsingUrp => GraphicsSettings.currentRenderPipeline != null;

        void OnEnable()
        {
            _camera = GetComponent<Camera>();
            if (!SystemInfo.supportsComputeShaders || !SystemInfo.supportsAsyncGPUReadback)
            {
                Fail("this platform lacks compute shaders or AsyncGPUReadback");
                enabled = false;
                return;
            }
            _captureMat = new Material(Shader.Find("Hidden/Neurender/Capture")) { hideFlags = HideFlags.HideAndDontSave };
            _compositeMat = new Material(Shader.Find("Hidden/Neurender/Composite")) { hideFlags = HideFlags.HideAndDontSave };
            _pack = Resources.Load<ComputeShader>("Neurender/NeurenderPack");
            // Built-in pipeline: ask the camera for the G-buffer textures (URP: the feature's ConfigureInput).
            _camera.depthTextureMode |= DepthTextureMode.Depth | DepthTextureMode.DepthNormals | DepthTextureMode.MotionVectors;
            var options = new ClientOptions
            {
                Endpoint = string.IsNullOrEmpty(endpoint) ? null : endpoint,
                ClientName = "unity " + Application.unityVersion,
                RequestTimeoutMs = 2000,
            };
            if (!string.IsNullOrEmpty(serverPublicKey))
                options.Curve = new CurveKeys { ServerPublic = serverPublicKey, ClientPublic = clientPublicKey, ClientSecret = clientSecretKey };
            try
            {
                Client = new NeurenderClient(options); // connects in the background from Update's Pump
                Status = "connecting to " + Client.Endpoint;
            }
            catch (Exception e) { Fail(e.Message); enabled = false; }
        }

        void OnDisable()
        {
            try { if (Session != null && !Session.IsClosed) Session.Close(); }
            catch (NeurenderException) { } // the daemon may be gone already; it cleans up by itself
            Session = null;
            if (Client != null) { Client.Dispose(); Client = null; }
            ReleaseCapture();
            if (_builtinCmd != null) { _builtinCmd.Release(); _builtinCmd = null; }
            if (_output != null) { Destroy(_output); _output = null; }
            if (_captureMat != null) Destroy(_captureMat);
            if (_compositeMat != null) Destroy(_compositeMat);
            Status = "idle";
        }

        void Fail(string message)
        {
            LastError = message;
            Status = "error: " + message;
            Debug.LogWarning("[neurender] " + message, this);
        }

        // ---- main thread: network, session, results --------------------------------------------

        void Update()
        {
            if (Client == null) return;
            try
            {
                Client.Pump(0);
                if (!Client.Connected) { Status = "waiting for the daemon at " + Client.Endpoint; return; }
                EnsureSession();
                if (Session == null) return;
                if (Session.Generation != _generation) { _generation = Session.Generation; _sentPrompt = Session.Config.Prompt; }
                if (prompt != _sentPrompt) { Session.SetPrompt(prompt); _sentPrompt = prompt; }
                TakeNewestResult();
                var err = Client.TakeError();
                if (err != null) LastError = err.Message;
                Status = $"session {Session.Id} ({Session.Width}x{Session.Height}), daemon pid {Client.Welcome?.Pid}";
            }
            catch (NeurenderException e) { Fail(e.Message); }
        }

        int CaptureWidth => Mathf.Max(8, Mathf.RoundToInt(_camera.pixelWidth * resolutionScale));
        int CaptureHeight => Mathf.Max(8, Mathf.RoundToInt(_camera.pixelHeight * resolutionScale));

        string ChannelKey() => $"{sendColor}{sendDepth}{sendNormals}{sendMotion}{colorAsFloat16}{slots}{(record ? lookName : "")}";

        void EnsureSession()
        {
            bool stale = Session != null && (CaptureWidth != _openedWidth || CaptureHeight != _openedHeight
                                             || steps != _openedSteps || ChannelKey() != _openedChannels);
            if (stale) { Session.Close(); Session = null; ReleaseCapture(); }
            if (Session != null || Time.unscaledTime - _lastOpenAttempt < 1f) return;
            _lastOpenAttempt = Time.unscaledTime;
            var cfg = new SessionConfig
            {
                Width = CaptureWidth, Height = CaptureHeight, Steps = steps, Slots = slots, Prompt = prompt,
                OutputFormat = "rgba8",
                // Shared memory only works on the daemon's host; over TCP the pixels travel in the message.
                Transport = Client.Endpoint.StartsWith("tcp://") ? "inline" : "shm",
            };
            if (sendColor) cfg.Channel("color", colorAsFloat16 ? "float16" : "uint8");
            if (sendDepth) cfg.Channel("depth", "float32");
            if (sendNormals) cfg.Channel("normals", "float16");
            if (sendMotion) cfg.Channel("motion", "float16");
            if (record && cfg.Channels.Count > 0) { cfg.Channel("final", "float16"); cfg.Record = lookName; }
            if (cfg.Channels.Count == 0) { Fail("enable at least one channel"); return; }
            try { Session = Client.Open(cfg); }
            catch (DaemonErrorException e) { Fail($"the daemon refused the session: {e.Code}: {e.DaemonMessage}"); return; }
            _openedWidth = cfg.Width; _openedHeight = cfg.Height; _openedSteps = steps; _openedChannels = ChannelKey();
            _sentPrompt = prompt;
            _generation = Session.Generation;
            BuildCapture();
        }

        void TakeNewestResult()
        {
            FrameResult r, newest = null;
            while (Session.TryGetResult(out r))
            {
                if (r.Status == FrameStatus.Done) newest = r;
                else if (r.Status == FrameStatus.Failed) LastError = r.Error.Message;
            }
            if (Session.RecordError != null) LastError = "recording stopped: " + Session.RecordError.DaemonMessage;
            if (newest == null) return;
            if (newest.Pixels != null) _output.LoadRawTextureData(newest.Pixels);
            else
            {
                try { Session.ReadOutput(newest.Slot, _outputBytes); }
                catch (InvalidOperationException) { return; } // lost in the same Pump: its memory is unmapped
                _output.LoadRawTextureData(_outputBytes);
            }
            _output.Apply(false);
        }

        void BuildCapture()
        {
            ReleaseCapture();
            int w = Session.Width, h = Session.Height;
            foreach (ChannelInfo info in Session.Info.Channels)
            {
                var c = new CaptureChannel { Name = info.Name, Dtype = info.Dtype, Components = info.Components };
                RenderTextureFormat fmt;
                switch (info.Name)
                {
                    case "color": c.Pass = 0; fmt = RenderTextureFormat.ARGBHalf; break;
                    // the camera's finished frame, the target a recording trains towards
                    case "final": c.Pass = 0; fmt = RenderTextureFormat.ARGBHalf; break;
                    case "depth": c.Pass = 1; fmt = RenderTextureFormat.RFloat; break;
                    case "normals": c.Pass = UsingUrp ? 3 : 2; fmt = RenderTextureFormat.ARGBHalf; break;
                    case "motion": c.Pass = UsingUrp ? 5 : 4; fmt = RenderTextureFormat.RGHalf; break;
                    default: throw new NeurenderException("the Unity layer cannot capture channel " + info.Name);
                }
                c.Texture = new RenderTexture(w, h, 0, fmt, RenderTextureReadWrite.Linear) { name = "neurender " + info.Name };
                c.Texture.Create();
                int elem = PixelCopy.ElementSize(info.Dtype);
                c.Words = (int)((info.Nbytes + 3) / 4);
                c.Kernel = _pack.FindKernel(elem == 4 ? "PackF32" : elem == 2 ? "PackF16" : "PackU8");
                c.Packed = new ComputeBuffer(c.Words, 4, ComputeBufferType.Raw);
                c.Scratch = new byte[info.Nbytes];
                _channels.Add(c);
            }
            _output = new Texture2D(w, h, TextureFormat.RGBA32, false, true) { name = "neurender output", wrapMode = TextureWrapMode.Clamp };
            _outputBytes = new byte[Session.Info.Output.Nbytes];
        }

        void ReleaseCapture()
        {
            foreach (var c in _channels)
            {
                if (c.Texture != null) c.Texture.Release();
                if (c.Packed != null) c.Packed.Release();
            }
            _channels.Clear();
        }

        // ---- render thread side: recorded into a command buffer by either pipeline ------------

        /// <summary>Records this frame's capture: channel passes, GPU packing, async readbacks into
        /// a free slot. Does nothing (and counts a skipped frame) when no slot is free.</summary>
        public void RecordCapture(CommandBuffer cmd, RenderTargetIdentifier cameraColor)
        {
            if (Session == null || _channels.Count == 0 || !Client.Connected) return;
            bool inline = Session.Info.Transport == "inline";
            int slot = -1;
            if (inline) { if (Session.InFlightCount + _pendingInline >= slots) { SkippedFrames++; return; } _pendingInline++; }
            else if ((slot = Session.AcquireSlot()) < 0) { SkippedFrames++; return; }
            var frame = new PendingFrame
            {
                Slot = slot, Remaining = _channels.Count, Generation = Session.Generation,
                Action = actionSource != null ? actionSource.Sample() : null, Constants = CameraConstants(),
                Inline = inline ? new byte[_channels.Count][] : null,
            };
            cmd.SetGlobalMatrix(WorldToViewId, _camera.worldToCameraMatrix);
            cmd.SetGlobalVector(SizeId, new Vector4(Session.Width, Session.Height, 0, 0));
            foreach (var c in _channels)
            {
                cmd.Blit(cameraColor, c.Texture, _captureMat, c.Pass);
                cmd.SetComputeTextureParam(_pack, c.Kernel, SrcId, c.Texture);
                cmd.SetComputeBufferParam(_pack, c.Kernel, DstId, c.Packed);
                cmd.SetComputeIntParam(_pack, WidthId, Session.Width);
                cmd.SetComputeIntParam(_pack, HeightId, Session.Height);
                cmd.SetComputeIntParam(_pack, ComponentsId, c.Components);
                cmd.SetComputeIntParam(_pack, WordsId, c.Words);
                cmd.SetComputeIntParam(_pack, GroupsXId, GroupsX);
                cmd.SetComputeIntParam(_pack, FlipYId, flipCapturedRows ? 1 : 0);
                int groups = (c.Words + 63) / 64;
                cmd.DispatchCompute(_pack, c.Kernel, Mathf.Min(groups, GroupsX), (groups + GroupsX - 1) / GroupsX, 1);
                CaptureChannel channel = c;
                int index = _channels.IndexOf(c);
                cmd.RequestAsyncReadback(c.Packed, req => OnReadback(frame, channel, index, req));
            }
        }

        // Main thread, a frame or two later. When the last channel of a frame has landed in its
        // slot, the frame goes to the daemon.
        void OnReadback(PendingFrame f, CaptureChannel c, int index, AsyncGPUReadbackRequest req)
        {
            bool last = --f.Remaining == 0;
            if (f.Inline != null && last) _pendingInline--;
            if (Session == null || Session.Generation != f.Generation || Session.IsClosed) return; // slot died with the session
            if (req.hasError) f.Failed = true;
            else if (f.Inline != null)
            {
                f.Inline[index] = new byte[c.Scratch.Length];
                req.GetData<byte>().GetSubArray(0, c.Scratch.Length).CopyTo(f.Inline[index]);
            }
            else
            {
                req.GetData<byte>().GetSubArray(0, c.Scratch.Length).CopyTo(c.Scratch);
                try { Session.WriteChannel(f.Slot, c.Name, c.Scratch); }
                catch (InvalidOperationException) { f.Failed = true; } // lost while the readback ran
            }
            if (!last) return;
            if (f.Failed)
            {
                SkippedFrames++;
                if (f.Slot >= 0) try { Session.ReleaseSlot(f.Slot); } catch (ArgumentException) { }
                return;
            }
            if (f.Inline != null) Session.SubmitInline(f.Inline, f.Action, f.Constants);
            else Session.Submit(f.Slot, f.Action, f.Constants);
        }

        /// <summary>Records the composite of the newest neural frame over the camera image.</summary>
        public void RecordComposite(CommandBuffer cmd, RenderTargetIdentifier cameraColor, RenderTargetIdentifier destination)
        {
            if (composite == CompositeMode.Off || _output == null || Session == null || Session.Stats.Done == 0)
            {
                cmd.Blit(cameraColor, destination);
                return;
            }
            _compositeMat.SetTexture(NeuralTexId, _output);
            _compositeMat.SetFloat(BlendId, composite == CompositeMode.Replace ? 1f : blend);
            cmd.Blit(cameraColor, destination, _compositeMat, 0);
        }

        /// <summary>Tells the renderer the next frame is a cut (teleport, scene change): it drops its history.</summary>
        public void Cut() { if (Session != null) Session.Reset(); }

        // Camera constants (bridge/channels.py CONSTANTS_LAYOUT): 4x4 matrices row-major for column
        // vectors, Unity's view space (x right, y up, z towards the viewer), no jitter.
        Dictionary<string, float[]> CameraConstants()
        {
            Matrix4x4 view = _camera.worldToCameraMatrix, proj = _camera.nonJitteredProjectionMatrix;
            Matrix4x4 viewProj = proj * view;
            Matrix4x4 clipToPrev = (_havePrev ? _prevViewProj : viewProj) * viewProj.inverse;
            _prevViewProj = viewProj;
            _havePrev = true;
            Transform t = _camera.transform;
            return new Dictionary<string, float[]>
            {
                { "world_to_view", RowMajor(view) },
                { "view_to_clip", RowMajor(proj) },
                { "clip_to_view", RowMajor(proj.inverse) },
                { "clip_to_prev_clip", RowMajor(clipToPrev) },
                { "camera_position", V(t.position) },
                { "camera_forward", V(t.forward) },
                { "camera_up", V(t.up) },
                { "camera_right", V(t.right) },
                { "near", new[] { _camera.nearClipPlane } },
                { "far", new[] { _camera.farClipPlane } },
                { "fov_y_deg", new[] { _camera.fieldOfView } },
                { "aspect", new[] { _camera.aspect } },
                { "jitter_px", new[] { 0f, 0f } },
                { "dt", new[] { Time.deltaTime } },
            };
        }

        static float[] RowMajor(Matrix4x4 m)
        {
            var a = new float[16];
            for (int r = 0; r < 4; r++) for (int c = 0; c < 4; c++) a[r * 4 + c] = m[r, c];
            return a;
        }

        static float[] V(Vector3 v) => new[] { v.x, v.y, v.z };

        // ---- built-in render pipeline hook ------------------------------------------------------

        void OnRenderImage(RenderTexture source, RenderTexture destination)
        {
            if (UsingUrp) { Graphics.Blit(source, destination); return; } // URP never calls this; be safe
            if (_builtinCmd == null) _builtinCmd = new CommandBuffer { name = "neurender" };
            _builtinCmd.Clear();
            RecordCapture(_builtinCmd, source);
            // destination is null when this camera renders straight to the screen
            RecordComposite(_builtinCmd, source, destination != null ? new RenderTargetIdentifier(destination)
                                                                     : new RenderTargetIdentifier(BuiltinRenderTextureType.CameraTarget));
            Graphics.ExecuteCommandBuffer(_builtinCmd);
        }
    }
}
