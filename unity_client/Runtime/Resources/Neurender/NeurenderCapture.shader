// Fullscreen passes that turn what the camera rendered into the protocol's channels
// (bridge/channels.py): one float render texture per channel, still in Unity's row order; the
// pack compute shader flips rows and converts to the declared dtype.
//   0 color    linear RGB as rendered
//   1 depth    linear view-space distance along the camera's forward axis (LinearEyeDepth)
//   2 normals  built-in pipeline: view space from _CameraDepthNormalsTexture
//   3 normals  URP: world-space _CameraNormalsTexture rotated into view space
//   4 motion   built-in _CameraMotionVectorsTexture -> pixels, current -> previous, y down
//   5 motion   URP _MotionVectorTexture, same conversion
Shader "Hidden/Neurender/Capture"
{
    Properties { _MainTex ("Source", 2D) = "black" {} }
    CGINCLUDE
    #include "UnityCG.cginc"
    sampler2D _MainTex;
    UNITY_DECLARE_DEPTH_TEXTURE(_CameraDepthTexture);
    sampler2D _CameraDepthNormalsTexture;
    sampler2D _CameraNormalsTexture;
    sampler2D _CameraMotionVectorsTexture;
    sampler2D _MotionVectorTexture;
    float4x4 _NeurenderWorldToView; // Camera.worldToCameraMatrix: x right, y up, z towards the viewer
    float2 _NeurenderSize;          // capture width, height in pixels

    // Unity stores uv(current) - uv(previous) with v up; the protocol wants pixels from the
    // current pixel to where it was, with y down: (-du * W, +dv * H).
    float4 MotionToPixels(float2 mv) { return float4(-mv.x * _NeurenderSize.x, mv.y * _NeurenderSize.y, 0, 0); }
    ENDCG

    SubShader
    {
        Cull Off ZWrite Off ZTest Always
        Pass // 0 color
        {
            CGPROGRAM
            #pragma vertex vert_img
            #pragma fragment frag
            float4 frag(v2f_img i) : SV_Target { return float4(tex2D(_MainTex, i.uv).rgb, 1); }
            ENDCG
        }
        Pass // 1 depth
        {
            CGPROGRAM
            #pragma vertex vert_img
            #pragma fragment frag
            float4 frag(v2f_img i) : SV_Target
            {
                float raw = SAMPLE_DEPTH_TEXTURE(_CameraDepthTexture, i.uv);
                return float4(LinearEyeDepth(raw), 0, 0, 0);
            }
            ENDCG
        }
        Pass // 2 normals, built-in
        {
            CGPROGRAM
            #pragma vertex vert_img
            #pragma fragment frag
            float4 frag(v2f_img i) : SV_Target
            {
                float depth01; float3 n;
                DecodeDepthNormal(tex2D(_CameraDepthNormalsTexture, i.uv), depth01, n);
                return float4(n, 0);
            }
            ENDCG
        }
        Pass // 3 normals, URP
        {
            CGPROGRAM
            #pragma vertex vert_img
            #pragma fragment frag
            float4 frag(v2f_img i) : SV_Target
            {
                float3 w = tex2D(_CameraNormalsTexture, i.uv).xyz;
                float3 v = mul((float3x3)_NeurenderWorldToView, w);
                return float4(normalize(v + 1e-8), 0);
            }
            ENDCG
        }
        Pass // 4 motion, built-in
        {
            CGPROGRAM
            #pragma vertex vert_img
            #pragma fragment frag
            float4 frag(v2f_img i) : SV_Target { return MotionToPixels(tex2D(_CameraMotionVectorsTexture, i.uv).xy); }
            ENDCG
        }
        Pass // 5 motion, URP
        {
            CGPROGRAM
            #pragma vertex vert_img
            #pragma fragment frag
            float4 frag(v2f_img i) : SV_Target { return MotionToPixels(tex2D(_MotionVectorTexture, i.uv).xy); }
            ENDCG
        }
    }
}
