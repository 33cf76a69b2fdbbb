#version 330
// Reference look, pass 3: screen-space ambient occlusion from the prepass (view-space hemisphere samples,
// rotated by a fixed 4x4 interleaved pattern so the result is deterministic).
uniform sampler2D u_normal_depth;
uniform vec2 u_tan_half;
uniform vec3 u_kernel[16];
uniform float u_radius;
in vec2 v_ndc;
out float o_ao;
vec3 view_pos(vec2 ndc, float d) { return vec3(ndc * u_tan_half * d, -d); }
void main() {
    ivec2 px = ivec2(gl_FragCoord.xy);
    vec4 nd = texelFetch(u_normal_depth, px, 0);
    if (nd.a <= 0.0) { o_ao = 1.0; return; }
    vec3 n = normalize(nd.xyz);
    vec3 p = view_pos(v_ndc, nd.a);
    float angle = float((px.x & 3) * 4 + (px.y & 3)) * (6.2831853 / 16.0);
    vec3 r = vec3(cos(angle), sin(angle), 0.0);
    vec3 t = normalize(r - n * dot(r, n) + vec3(1e-4, 0.0, 0.0));
    vec3 b = cross(n, t);
    vec2 size = vec2(textureSize(u_normal_depth, 0));
    float occ = 0.0;
    for (int i = 0; i < 16; ++i) {
        vec3 s = p + (t * u_kernel[i].x + b * u_kernel[i].y + n * u_kernel[i].z) * u_radius;
        vec2 ndc = s.xy / (-s.z * u_tan_half);
        ivec2 q = ivec2((ndc * 0.5 + 0.5) * size);
        if (any(lessThan(q, ivec2(0))) || any(greaterThanEqual(q, ivec2(size)))) continue;
        float d = texelFetch(u_normal_depth, q, 0).a;
        if (d <= 0.0) continue;
        float range = smoothstep(0.0, 1.0, u_radius / max(abs(-s.z - d), 1e-3));
        occ += (d < -s.z - 0.03) ? range : 0.0;
    }
    o_ao = 1.0 - occ / 16.0;
}
