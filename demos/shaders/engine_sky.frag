#version 330
// Sky pixels of the engine pass (drawn first, geometry overwrites): material 0, depth = far, normal 0.
#include "motion.glsl"
uniform mat4 u_inv_view_rot;    // view -> world rotation
uniform mat4 u_prev_viewproj;
uniform vec2 u_tan_half;        // tan(fov_x / 2), tan(fov_y / 2)
uniform vec3 u_albedo[16];
in vec2 v_ndc;
layout(location = 0) out vec4 o_color_depth;
layout(location = 1) out vec4 o_normal_mat;
layout(location = 2) out vec4 o_motion;
layout(location = 3) out vec4 o_albedo;
void main() {
    vec3 dir = normalize((u_inv_view_rot * vec4(v_ndc * u_tan_half, -1.0, 0.0)).xyz);
    vec3 sky = mix(u_albedo[0] * 1.2, u_albedo[0] * 0.6, clamp(dir.y, 0.0, 1.0));
    o_color_depth = vec4(clamp(sky, 0.0, 1.0), u_far);
    o_normal_mat = vec4(0.0);
    vec4 prev_clip = u_prev_viewproj * vec4(dir, 0.0);  // a point at infinity moves with rotation only
    vec2 prev = prev_pixel(prev_clip);
    vec2 motion = (u_has_prev == 1 && prev_clip.w > 0.0) ? prev - current_pixel() : vec2(0.0);
    o_motion = vec4(motion, disocclusion(prev, u_far, prev_clip.w > 0.0), 0.0);
    o_albedo = vec4(sky, 1.0);
}
