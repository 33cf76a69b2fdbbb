#version 330
// Reference look, pass 5: box-filter down-sampling of the supersampled image, outlines (cartoon),
// saturation, exposure and a filmic curve into linear [0, 1].
uniform sampler2D u_hdr;
uniform sampler2D u_normal_depth;
uniform int u_ssaa;
uniform float u_exposure;
uniform float u_saturation;
uniform float u_outline;
out vec4 o_color;
vec3 aces(vec3 x) { return clamp(x * (2.51 * x + 0.03) / (x * (2.43 * x + 0.59) + 0.14), 0.0, 1.0); }
// An outline pixel: sky/surface boundary, a crease (normals differ), or a depth step that a plane
// would not make (the second difference, so a wall seen at a grazing angle is not outlined).
float edge(ivec2 q, ivec2 size) {
    vec4 c = texelFetch(u_normal_depth, q, 0);
    float e = 0.0;
    for (int axis = 0; axis < 2; ++axis) {
        ivec2 o = (axis == 0) ? ivec2(1, 0) : ivec2(0, 1);
        vec4 a = texelFetch(u_normal_depth, clamp(q + o, ivec2(0), size), 0);
        vec4 b = texelFetch(u_normal_depth, clamp(q - o, ivec2(0), size), 0);
        if ((c.a <= 0.0) != (a.a <= 0.0) || (c.a <= 0.0) != (b.a <= 0.0)) { e = 1.0; continue; }
        if (c.a <= 0.0) continue;  // sky
        if (dot(c.xyz, a.xyz) < 0.7 || dot(c.xyz, b.xyz) < 0.7) e = 1.0;
        if (abs(a.a + b.a - 2.0 * c.a) > 0.04 * c.a) e = 1.0;
    }
    return e;
}
void main() {
    ivec2 base = ivec2(gl_FragCoord.xy) * u_ssaa;
    ivec2 size = textureSize(u_hdr, 0) - 1;
    vec3 s = vec3(0.0);
    float e = 0.0;
    for (int j = 0; j < u_ssaa; ++j)
        for (int i = 0; i < u_ssaa; ++i) {
            ivec2 q = base + ivec2(i, j);
            s += texelFetch(u_hdr, q, 0).rgb;
            if (u_outline > 0.0) e += edge(q, size);
        }
    float k = 1.0 / float(u_ssaa * u_ssaa);
    vec3 c = s * k * u_exposure;
    float l = dot(c, vec3(0.2126, 0.7152, 0.0722));
    c = max(mix(vec3(l), c, u_saturation), 0.0);
    c = aces(c);
    c = mix(c, vec3(0.02), u_outline * e * k);
    o_color = vec4(c, 1.0);
}
