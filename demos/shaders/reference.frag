#version 330
// Reference look, pass 4: textured, shadowed, occluded, fogged shading of the town in one style.
#include "noise.glsl"
#include "materials.glsl"
#include "sky.glsl"
uniform sampler2DShadow u_shadow;
uniform mat4 u_shadow_matrix;    // world -> shadow-map [0, 1]^3
uniform float u_shadow_texel;    // one shadow-map texel in [0, 1] units
uniform float u_shadow_softness; // PCF radius in texels
uniform sampler2D u_ao;
uniform float u_ao_scale;        // ssaa factor: AO is blurred over this many pixels squared
uniform vec3 u_camera;
uniform float u_ambient;
uniform vec3 u_fog_color;
uniform float u_fog_density;
uniform vec3 u_lamps[12];
uniform float u_lamp_intensity;
uniform float u_snow;
uniform float u_leaves;
uniform float u_cartoon;
in vec3 v_world;
in vec3 v_object;
in vec3 v_world_normal;
in vec3 v_view_normal;
in float v_depth;
in vec4 v_prev_clip;
flat in int v_mat;
flat in int v_obj;
out vec4 o_color;

const vec2 POISSON[12] = vec2[](
    vec2(-0.326, -0.406), vec2(-0.840, -0.074), vec2(-0.696, 0.457), vec2(-0.203, 0.621),
    vec2(0.962, -0.195), vec2(0.473, -0.480), vec2(0.519, 0.767), vec2(0.185, -0.893),
    vec2(0.507, 0.064), vec2(0.896, 0.412), vec2(-0.322, -0.933), vec2(-0.792, -0.598));

float sun_shadow(vec3 p, vec3 n) {
    float ndl = dot(n, u_sun_dir);
    vec4 s = u_shadow_matrix * vec4(p + n * 0.08, 1.0);
    if (any(lessThan(s.xy, vec2(0.0))) || any(greaterThan(s.xy, vec2(1.0)))) return 1.0;
    float bias = u_shadow_texel * (1.5 + 2.0 * sqrt(max(1.0 - ndl * ndl, 0.0)) / max(abs(ndl), 0.2));
    float lit = 0.0;
    for (int i = 0; i < 12; ++i)
        lit += texture(u_shadow, vec3(s.xy + POISSON[i] * u_shadow_softness * u_shadow_texel, s.z - bias));
    return lit / 12.0;
}

float ambient_occlusion() {
    ivec2 px = ivec2(gl_FragCoord.xy);
    ivec2 size = textureSize(u_ao, 0) - 1;
    float s = 0.0;
    for (int j = -1; j <= 2; ++j)
        for (int i = -1; i <= 2; ++i)
            s += texelFetch(u_ao, clamp(px + ivec2(i, j), ivec2(0), size), 0).r;
    return s / 16.0;
}

void main() {
    vec3 n = normalize(v_world_normal);
    vec3 p = (v_obj == 0) ? v_world : v_object;
    vec2 spec;
    vec3 albedo = material_albedo(v_mat, p, n, v_obj, spec);
    if (u_flat > 0.0) {  // cartoon: textures flattened towards the mean colour of each material
        vec2 s2;
        vec3 flat_c = material_albedo(v_mat, vec3(0.5), vec3(0.0, 1.0, 0.0), v_obj, s2);
        albedo = mix(albedo, flat_c, 0.75 * u_flat);
    }
    vec2 wcell;
    float glass = (v_obj == 0 && (v_mat == 2 || v_mat == 3 || v_mat == 4)) ? window_mask(p, n, wcell) : 0.0;
    albedo = mix(albedo, vec3(0.05, 0.06, 0.08), glass);
    spec = mix(spec, vec2(0.9, 200.0), glass);
    float snow = 0.0;
    if (u_snow > 0.0)
        snow = (1.0 - glass) * u_snow * smoothstep(0.45, 0.75, n.y + 0.35 * (fbm(v_world * 1.7) - 0.5));
    albedo = mix(albedo, vec3(0.88, 0.9, 0.95), snow);
    if (u_leaves > 0.0 && n.y > 0.7 && v_obj == 0 && (v_mat == 1 || v_mat == 2 || v_mat == 6 || v_mat == 8)) {
        vec3 q = v_world * 5.0;
        float leaf = u_leaves * smoothstep(0.76, 0.8, vnoise(q) * 0.6 + fbm(v_world * 0.35) * 0.5);
        vec3 leaf_c = mix(vec3(0.42, 0.11, 0.02), vec3(0.58, 0.3, 0.04), hash13(floor(q)));
        albedo = mix(albedo, leaf_c, leaf);
    }
    spec = mix(spec, vec2(0.15, 30.0), snow);

    vec3 v = normalize(u_camera - v_world);
    float ndl = max(dot(n, u_sun_dir), 0.0);
    float shadow = (ndl > 0.0) ? sun_shadow(v_world, n) : 0.0;
    float direct = ndl * shadow;
    if (u_cartoon > 0.0) direct = mix(direct, smoothstep(0.1, 0.16, direct) * 0.6 + smoothstep(0.55, 0.6, direct) * 0.4, u_cartoon);
    vec3 h = normalize(u_sun_dir + v);
    float sp = spec.x * pow(max(dot(n, h), 0.0), spec.y) * shadow * step(0.0, ndl);
    float ao = ambient_occlusion();
    vec3 sky_up = mix(u_sky_horizon, u_sky_zenith, 0.5);
    sky_up = mix(vec3(dot(sky_up, vec3(0.2126, 0.7152, 0.0722))), sky_up, 0.45);  // sky light is mostly white
    vec3 ground = (0.25 * u_sun_color * max(u_sun_dir.y, 0.0) + 0.2 * sky_up) * 0.35;  // bounce off the street
    vec3 hemi = mix(ground, sky_up, 0.5 + 0.5 * n.y) * u_ambient;
    vec3 color = albedo * (direct * u_sun_color + hemi * ao) + sp * u_sun_color * (1.0 - u_cartoon);
    for (int i = 0; i < (u_lamp_intensity > 0.0 ? 12 : 0); ++i) {   // street lamps (night)
        vec3 l = u_lamps[i] - v_world;
        float d2 = dot(l, l);
        vec3 ld = l * inversesqrt(d2);
        float fall = u_lamp_intensity * 10.0 / (d2 + 1.0);
        color += albedo * vec3(1.0, 0.75, 0.45) * fall * max(dot(n, ld), 0.0);
        color += vec3(1.0, 0.75, 0.45) * fall * spec.x * pow(max(dot(n, normalize(ld + v)), 0.0), spec.y);
    }
    // glass reflects the sky; at night some windows are lit from inside
    vec3 r = reflect(-v, n);
    color += glass * (0.25 * mix(u_sky_horizon, u_sky_zenith, clamp(r.y, 0.0, 1.0)) * (1.0 - u_cartoon));
    float lit = step(0.55, hash12(wcell + vec2(float(v_mat) * 13.0, floor(v_world.x + v_world.z) * 0.0)));
    color += glass * lit * u_lamp_intensity * vec3(1.0, 0.7, 0.35) * 0.9;
    if (v_mat == 13) color = vec3(1.0, 0.9, 0.7) * (1.0 + 6.0 * u_lamp_intensity);  // glowing lamp heads
    // height fog, coloured towards the sun
    float dist = length(u_camera - v_world);
    float fog = 1.0 - exp(-u_fog_density * dist * exp(-max(v_world.y, 0.0) * 0.04));
    vec3 fog_c = u_fog_color + u_sun_color * 0.15 * pow(max(dot(-v, u_sun_dir), 0.0), 6.0);
    o_color = vec4(mix(color, fog_c, fog), 1.0);
}
