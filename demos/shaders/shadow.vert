#version 330
uniform mat4 u_models[16];
uniform mat4 u_light_viewproj;
in vec3 in_pos;
in float in_obj;
void main() {
    gl_Position = u_light_viewproj * (u_models[int(in_obj + 0.5)] * vec4(in_pos, 1.0));
}
