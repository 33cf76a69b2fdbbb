// Deterministic hash-based value noise (no textures, identical for a given position on every run).
// An integer hash of a lattice point (PCG-style mixing): float hashes of large world coordinates show
// diagonal streaks, this does not. Callers pass integer-valued coordinates.
uint pcg(uint v) {
    uint state = v * 747796405u + 2891336453u;
    uint word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}
float hash13(vec3 p) {
    uvec3 q = uvec3(ivec3(floor(p)));
    return float(pcg(q.x + pcg(q.y + pcg(q.z)))) * (1.0 / 4294967296.0);
}
float hash12(vec2 p) { return hash13(vec3(p, 17.17)); }
float vnoise(vec3 p) {
    vec3 i = floor(p), f = fract(p);
    vec3 u = f * f * (3.0 - 2.0 * f);
    return mix(mix(mix(hash13(i), hash13(i + vec3(1, 0, 0)), u.x),
                   mix(hash13(i + vec3(0, 1, 0)), hash13(i + vec3(1, 1, 0)), u.x), u.y),
               mix(mix(hash13(i + vec3(0, 0, 1)), hash13(i + vec3(1, 0, 1)), u.x),
                   mix(hash13(i + vec3(0, 1, 1)), hash13(i + vec3(1, 1, 1)), u.x), u.y), u.z);
}
float fbm(vec3 p) {
    float s = 0.0, a = 0.5;
    for (int i = 0; i < 4; ++i) { s += a * vnoise(p); p = p * 2.03 + 7.1; a *= 0.5; }
    return s / 0.9375;
}
