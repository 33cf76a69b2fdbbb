// URP hook: add this feature to the Universal Renderer asset. It asks URP for the depth, normals
// and motion-vector textures (ConfigureInput) and, after post-processing, lets the camera's
// NeuralRenderer record its capture and composite. Written against URP 14 (Unity 2022.3);
// Unity 6 (URP 17) needs "Compatibility Mode (Render Graph Disabled)" for this Execute path.
#if NEURENDER_URP
using UnityEngine;
using UnityEngine.Rendering;
using UnityEngine.Rendering.Universal;

namespace Neurender
{
    public sealed class NeuralRendererFeature : ScriptableRendererFeature
    {
        public RenderPassEvent passEvent = RenderPassEvent.AfterRenderingPostProcessing;
        NeuralPass _pass;

        public override void Create()
        {
            _pass = new NeuralPass { renderPassEvent = passEvent };
        }

        public override void AddRenderPasses(ScriptableRenderer renderer, ref RenderingData renderingData)
        {
            Camera cam = renderingData.cameraData.camera;
            if (renderingData.cameraData.cameraType != CameraType.Game) return;
            var nr = cam.GetComponent<NeuralRenderer>();
            if (nr == null || !nr.isActiveAndEnabled) return;
            _pass.Target = nr;
            _pass.ConfigureInput(ScriptableRenderPassInput.Depth | ScriptableRenderPassInput.Normal | ScriptableRenderPassInput.Motion);
            renderer.EnqueuePass(_pass);
        }

        protected override void Dispose(bool disposing) => _pass?.Dispose();

        sealed class NeuralPass : ScriptableRenderPass
        {
            public NeuralRenderer Target;
            RTHandle _copy;

            public override void OnCameraSetup(CommandBuffer cmd, ref RenderingData renderingData)
            {
                var desc = renderingData.cameraData.cameraTargetDescriptor;
                desc.depthBufferBits = 0;
                desc.msaaSamples = 1;
                RenderingUtils.ReAllocateIfNeeded(ref _copy, desc, name: "_NeurenderCameraCopy");
            }

            public override void Execute(ScriptableRenderContext context, ref RenderingData renderingData)
            {
                if (Target == null) return;
                CommandBuffer cmd = CommandBufferPool.Get("neurender");
                RTHandle color = renderingData.cameraData.renderer.cameraColorTargetHandle;
                cmd.Blit(color, _copy); // the composite reads the camera image while writing the target
                Target.RecordCapture(cmd, _copy);
                Target.RecordComposite(cmd, _copy, color);
                context.ExecuteCommandBuffer(cmd);
                CommandBufferPool.Release(cmd);
            }

            public void Dispose() => _copy?.Release();
        }
    }
}
#endif
