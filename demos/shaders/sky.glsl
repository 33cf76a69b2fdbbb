// Sky of the reference look: zenith/horizon gradient, sun disk and glow, drifting clouds, stars at night.
uniform vec3 u_sky_zenith;
uniform vec3 u_sky_horizon;
uniform vec3 u_sun_dir;     // world, towards the sun
uniform vec3 u_sun_color;
uniform float u_stars;
uniform float u_time;

vec3 sky_color(vec3 d) {
    float h = clamp(d.y, -0.2, 1.0);
    vec3 c = mix(u_sky_horizon, u_sky_zenith, pow(max(h, 0.0), 0.55));
    float s = max(dot(d, u_sun_dir), 0.0);
    c += u_sun_color * (0.25 * pow(s, 8.0) + 0.5 * pow(s, 64.0)) * (1.0 - u_stars);
    c += u_sun_color * smoothstep(0.9995, 0.9998, s) * 6.0;
    if (d.y > 0.01) {
        vec2 uv = d.xz / d.y * 0.6 + vec2(u_time * 0.01, 0.0);
        float cl = smoothstep(0.5, 0.8, fbm(vec3(uv, 0.0)));
        vec3 cloud = mix(u_sky_horizon, vec3(1.0), 0.6) * (0.6 + 0.4 * dot(u_sun_color, vec3(0.33)));
        c = mix(c, cloud * (1.0 - 0.85 * u_stars), cl * smoothstep(0.01, 0.2, d.y) * 0.8);
        vec2 g = floor(d.xz / d.y * 60.0);
        c += u_stars * step(0.997, hash12(g)) * vec3(0.6);
    }
    return c;
}
