#version 330
// The engine pass: one multi-render-target pass, plain Lambert with one light.
#include "motion.glsl"
uniform vec3 u_light_view;   // unit vector towards the light, view space
uniform vec3 u_light_color;
uniform vec3 u_ambient;
uniform vec3 u_albedo[16];
in vec3 v_world;
in vec3 v_object;
in vec3 v_world_normal;
in vec3 v_view_normal;
in float v_depth;
in vec4 v_prev_clip;
flat in int v_mat;
layout(location = 0) out vec4 o_color_depth;
layout(location = 1) out vec4 o_normal_mat;
layout(location = 2) out vec4 o_motion;
layout(location = 3) out vec4 o_albedo;
void main() {
    vec3 n = normalize(v_view_normal);
    vec3 albedo = u_albedo[v_mat];
    vec3 color = albedo * (u_ambient + max(dot(n, u_light_view), 0.0) * u_light_color);
    o_color_depth = vec4(clamp(color, 0.0, 1.0), v_depth);
    o_normal_mat = vec4(n, float(v_mat));
    vec2 prev = prev_pixel(v_prev_clip);
    vec2 motion = (u_has_prev == 1) ? prev - current_pixel() : vec2(0.0);
    o_motion = vec4(motion, disocclusion(prev, v_prev_clip.w, v_prev_clip.w > 0.0), 0.0);
    o_albedo = vec4(albedo, 1.0);
}
