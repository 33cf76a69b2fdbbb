#version 330
#include "noise.glsl"
#include "sky.glsl"
uniform mat4 u_inv_view_rot;
uniform vec2 u_tan_half;
uniform vec3 u_fog_color;
uniform float u_fog_density;
in vec2 v_ndc;
out vec4 o_color;
void main() {
    vec3 d = normalize((u_inv_view_rot * vec4(v_ndc * u_tan_half, -1.0, 0.0)).xyz);
    vec3 c = sky_color(d);
    // thick fog swallows the sky near the horizon
    float haze = clamp(u_fog_density * 60.0, 0.0, 1.0) * (1.0 - smoothstep(0.0, 0.5, d.y));
    o_color = vec4(mix(c, u_fog_color, haze), 1.0);
}
