// Puts the daemon's frame on screen: lerp(camera image, neural frame, _Blend). The neural frame's
// rows start at the top of the screen, so it is sampled with v flipped.
Shader "Hidden/Neurender/Composite"
{
    Properties
    {
        _MainTex ("Camera", 2D) = "black" {}
        _NeuralTex ("Neural frame", 2D) = "black" {}
        _Blend ("Blend", Range(0, 1)) = 1
    }
    SubShader
    {
        Cull Off ZWrite Off ZTest Always
        Pass
        {
            CGPROGRAM
            #pragma vertex vert_img
            #pragma fragment frag
            #include "UnityCG.cginc"
            sampler2D _MainTex;
            sampler2D _NeuralTex;
            float _Blend;
            float4 frag(v2f_img i) : SV_Target
            {
                float4 cam = tex2D(_MainTex, i.uv);
                float3 neural = tex2D(_NeuralTex, float2(i.uv.x, 1 - i.uv.y)).rgb;
                return float4(lerp(cam.rgb, neural, _Blend), cam.a);
            }
            ENDCG
        }
    }
}
