// Motion vectors and disocclusion, following bridge/channels.py: pixels, y down, current -> previous.
uniform vec2 u_size;
uniform sampler2D u_prev_depth;  // previous frame's attachment 0; .a is its linear depth
uniform int u_has_prev;
uniform float u_far;

vec2 current_pixel() {
    return vec2(gl_FragCoord.x, u_size.y - gl_FragCoord.y);
}

vec2 prev_pixel(vec4 prev_clip) {
    vec2 ndc = prev_clip.xy / prev_clip.w;
    return vec2((ndc.x * 0.5 + 0.5) * u_size.x, (0.5 - 0.5 * ndc.y) * u_size.y);
}

// 1 where the point (expected previous linear depth `expected`) was hidden or off screen last frame.
float disocclusion(vec2 prev_px, float expected, bool in_front) {
    if (u_has_prev == 0 || !in_front) return 1.0;
    if (prev_px.x < 0.0 || prev_px.y < 0.0 || prev_px.x > u_size.x || prev_px.y > u_size.y) return 1.0;
    vec2 g = vec2(prev_px.x, u_size.y - prev_px.y) - 0.5;
    ivec2 base = ivec2(floor(g));
    ivec2 hi = ivec2(u_size) - 1;
    float lo_d = 1e30, hi_d = -1e30;
    for (int j = 0; j < 2; ++j)
        for (int i = 0; i < 2; ++i) {
            float d = texelFetch(u_prev_depth, clamp(base + ivec2(i, j), ivec2(0), hi), 0).a;
            lo_d = min(lo_d, d);
            hi_d = max(hi_d, d);
        }
    float tol = 0.02 * expected + 0.05;
    return (expected >= lo_d - tol && expected <= hi_d + tol) ? 0.0 : 1.0;
}
