#version 330
// Shared by the engine pass and the reference look: places static (object 0) and dynamic vertices.
uniform mat4 u_models[16];
uniform mat4 u_prev_models[16];
uniform mat4 u_view;
uniform mat4 u_proj;
uniform mat4 u_prev_viewproj;
in vec3 in_pos;
in vec3 in_normal;
in float in_mat;
in float in_obj;
out vec3 v_world;       // world-space position
out vec3 v_object;      // object-space position: solid textures stick to moving objects
out vec3 v_world_normal;
out vec3 v_view_normal;
out float v_depth;      // linear view depth (-z_view), interpolated exactly across a triangle
out vec4 v_prev_clip;
flat out int v_mat;
flat out int v_obj;
invariant gl_Position;  // the reference look's shading pass reuses the prepass depth buffer
void main() {
    int obj = int(in_obj + 0.5);
    vec4 w = u_models[obj] * vec4(in_pos, 1.0);
    vec4 vp = u_view * w;
    gl_Position = u_proj * vp;
    v_prev_clip = u_prev_viewproj * (u_prev_models[obj] * vec4(in_pos, 1.0));
    v_world = w.xyz;
    v_object = in_pos;
    v_world_normal = mat3(u_models[obj]) * in_normal;
    v_view_normal = mat3(u_view) * v_world_normal;
    v_depth = -vp.z;
    v_mat = int(in_mat + 0.5);
    v_obj = obj;
}
