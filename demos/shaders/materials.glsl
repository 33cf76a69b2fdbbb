// Procedural solid textures, evaluated in object space (world space for the static town).
// Material ids follow demos/materials.py. Returns albedo; `spec` gets (strength, shininess).
uniform vec3 u_foliage;
uniform vec3 u_grass;
uniform float u_flat;   // 1 = cartoon: mostly flat colours
uniform vec2 u_street;  // (block + street pitch, street width) of the town grid, metres

// Dashed white centre lines of the streets (x = const and z = const lines of the grid).
float lane_marking(vec3 p, vec3 n) {
    if (n.y < 0.7 || u_street.x <= 0.0) return 0.0;
    vec2 d = abs(mod(p.xz - 0.5 * u_street.y, u_street.x) - 0.0);  // distance past a centre line
    d = min(d, u_street.x - d);
    vec2 along = fract(p.zx / 3.0);  // dashes: 1.5 m paint, 1.5 m gap
    vec2 fw = fwidth(p.xz);
    vec2 line = (1.0 - smoothstep(0.08 - fw, 0.08 + fw, d)) * step(along, vec2(0.5));
    // no marking inside the crossings, where the other street's line runs
    vec2 in_cross = step(d.yx, vec2(0.5 * u_street.y));
    return clamp(line.x * (1.0 - in_cross.x) + line.y * (1.0 - in_cross.y), 0.0, 1.0);
}

vec2 wall_uv(vec3 p, vec3 n) {  // coordinates along a face: horizontal, vertical
    vec3 a = abs(n);
    if (a.y > 0.7) return p.xz;
    return vec2(a.x > a.z ? p.z : p.x, p.y);
}

// Fades a thin line pattern to its average where a pixel covers many repeats (no shimmering).
// `fw` = fwidth of the CONTINUOUS cell coordinate (cells per pixel).
float line_aa(vec2 f, vec2 width, vec2 fw) {
    vec2 l = 1.0 - smoothstep(width - fw, width + fw, f);  // the line's edge blurred over one pixel
    l = max(l, smoothstep(vec2(1.0) - fw, vec2(1.0), f));  // and its wrap-around edge at the cell end
    vec2 fade = smoothstep(0.1, 0.35, fw);  // below ~4 pixels a cell, blend towards the average
    l = mix(l, width, fade);
    return clamp(l.x + l.y, 0.0, 1.0);
}

vec3 brick(vec3 p, vec3 n) {
    vec2 uv = wall_uv(p, n) / vec2(0.42, 0.14);
    vec2 fw = fwidth(uv);  // before the row offset, which jumps
    float row = floor(uv.y);
    uv.x += 0.5 * mod(row, 2.0);
    vec2 cell = floor(uv), f = fract(uv);
    float mortar = line_aa(f, vec2(0.05, 0.1), fw);
    vec3 c = vec3(0.50, 0.19, 0.12) * (0.75 + 0.5 * hash12(cell)) * (0.9 + 0.2 * vnoise(p * 9.0));
    return mix(c, vec3(0.55, 0.53, 0.50), mortar);
}

// Windows on the upper floors of building walls: 1 = glass, and which window it is (for lit windows).
float window_mask(vec3 p, vec3 n, out vec2 cell) {
    cell = vec2(0.0);
    if (abs(n.y) > 0.3 || p.y < 3.6) return 0.0;
    vec2 uv = wall_uv(p, n) / vec2(2.6, 3.2);
    cell = floor(uv);
    vec2 f = fract(uv);
    vec2 fw = fwidth(uv);
    vec2 inside = smoothstep(vec2(0.25, 0.3) - fw, vec2(0.25, 0.3) + fw, f) *
                  (1.0 - smoothstep(vec2(0.75, 0.8) - fw, vec2(0.75, 0.8) + fw, f));
    return inside.x * inside.y;
}

vec3 wood(vec3 p) {
    float plank = floor(p.x * 3.0 + p.z * 0.2);
    float ring = fract((length(p.yz + vec2(hash12(vec2(plank, 1.0)) * 5.0)) + 0.3 * fbm(p * 3.0)) * 9.0);
    vec3 light = vec3(0.55, 0.37, 0.19), dark = vec3(0.33, 0.20, 0.09);
    return mix(light, dark, smoothstep(0.3, 0.7, ring)) * (0.85 + 0.3 * hash12(vec2(plank, 3.0)));
}

vec3 marble(vec3 p) {
    float v = abs(sin(p.x * 1.7 + p.y * 0.9 + 5.0 * fbm(p * 0.9)));
    float vein = pow(1.0 - v, 12.0);
    return mix(vec3(0.86, 0.85, 0.82), vec3(0.30, 0.30, 0.34), vein) * (0.95 + 0.05 * vnoise(p * 20.0));
}

vec3 concrete(vec3 p, vec3 n) {
    vec2 uv = wall_uv(p, n) / 1.5;
    vec2 f = fract(uv);
    float joint = (abs(n.y) > 0.7) ? line_aa(f, vec2(0.015), fwidth(uv)) : 0.0;
    vec3 c = vec3(0.42, 0.41, 0.40) * (0.8 + 0.35 * fbm(p * 2.5)) * (0.95 + 0.1 * vnoise(p * 30.0));
    return c * (1.0 - 0.4 * joint);
}

vec3 material_albedo(int m, vec3 p, vec3 n, int obj, out vec2 spec) {
    spec = vec2(0.04, 16.0);
    vec3 c;
    if (m == 1) {          // asphalt
        c = vec3(0.09, 0.09, 0.1) * (0.7 + 0.6 * fbm(p * 1.5)) * (0.9 + 0.2 * vnoise(p * 40.0));
        c = mix(c, vec3(0.75, 0.74, 0.7), 0.9 * lane_marking(p, n));
    } else if (m == 2) {   // concrete
        c = concrete(p, n);
    } else if (m == 3) {   // brick
        c = brick(p, n);
    } else if (m == 4) {   // plaster
        c = vec3(0.78, 0.73, 0.64) * (0.85 + 0.2 * fbm(p * 0.8)) * (0.97 + 0.06 * vnoise(p * 25.0));
    } else if (m == 5) {   // wood
        c = wood(p);
        spec = vec2(0.08, 24.0);
    } else if (m == 6) {   // marble
        c = marble(p);
        spec = vec2(0.5, 80.0);
    } else if (m == 7) {   // brushed metal
        c = vec3(0.56, 0.57, 0.60) * (0.85 + 0.15 * vnoise(vec3(p.x * 2.0, p.y * 60.0, p.z * 2.0)));
        spec = vec2(0.9, 60.0);
    } else if (m == 8) {   // grass
        c = u_grass * (0.6 + 0.6 * fbm(p * 2.0)) * (0.8 + 0.4 * vnoise(p * 35.0));
    } else if (m == 9) {   // foliage
        c = u_foliage * (0.5 + 0.8 * fbm(p * 3.5));
    } else if (m == 10) {  // bark
        c = vec3(0.25, 0.16, 0.09) * (0.6 + 0.7 * vnoise(vec3(p.x * 25.0, p.y * 2.0, p.z * 25.0)));
    } else if (m == 11) {  // roof tiles
        vec2 uv = p.xz / vec2(0.3, 0.25);
        c = vec3(0.38, 0.13, 0.10) * (0.7 + 0.5 * hash12(floor(uv))) * (1.0 - 0.3 * line_aa(vec2(1.0, fract(uv.y)), vec2(0.0, 0.08), fwidth(uv)));
    } else if (m == 12) {  // painted (dynamic objects): one colour per object
        float h = hash12(vec2(float(obj), 9.0));
        c = 0.6 * clamp(abs(mod(h * 6.0 + vec3(0.0, 4.0, 2.0), 6.0) - 3.0) - 1.0, 0.0, 1.0) + 0.08;
        spec = vec2(0.6, 90.0);
    } else if (m == 13) {  // lamp glass
        c = vec3(1.0, 0.92, 0.75);
    } else {
        c = vec3(0.5);
    }
    return c;
}
