#version 330
// Reference look, pass 2: view normal and linear depth for ambient occlusion and outlines.
in vec3 v_view_normal;
in float v_depth;
out vec4 o_normal_depth;
void main() {
    o_normal_depth = vec4(normalize(v_view_normal), v_depth);
}
