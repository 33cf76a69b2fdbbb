// Sample: drop this on an empty GameObject in a new scene and press Play with `neurender serve`
// running. It builds a small world (ground, boxes, a light), gives the main camera a first-person
// controller, a NeuralRenderer and a NeuralActionSource, and switches prompts with keys 1-4
// (C: a cut, B: toggle replace/blend).
using Neurender;
using Neurender.Core;
using UnityEngine;

public sealed class NeuralRendererSample : MonoBehaviour
{
    public string[] prompts =
    {
        "photorealistic, golden hour",
        "oil painting, thick brush strokes",
        "snowy winter village",
        "neon cyberpunk city at night",
    };
    public float moveSpeed = 5f;

    Camera _cam;
    NeuralRenderer _neural;
    NeuralActionSource _actions;
    float _yaw, _pitch;

    void Start()
    {
        BuildWorld();
        _cam = Camera.main != null ? Camera.main : new GameObject("Main Camera", typeof(Camera)) { tag = "MainCamera" }.GetComponent<Camera>();
        _cam.transform.position = new Vector3(0, 1.7f, -8);
        _actions = _cam.gameObject.AddComponent<NeuralActionSource>();
        _neural = _cam.gameObject.AddComponent<NeuralRenderer>();
        _neural.actionSource = _actions;
        _neural.prompt = prompts[0];
        Cursor.lockState = CursorLockMode.Locked;
    }

    void BuildWorld()
    {
        var ground = GameObject.CreatePrimitive(PrimitiveType.Plane);
        ground.transform.localScale = new Vector3(10, 1, 10);
        var rng = new System.Random(7);
        for (int i = 0; i < 40; i++)
        {
            var box = GameObject.CreatePrimitive(i % 3 == 0 ? PrimitiveType.Sphere : PrimitiveType.Cube);
            float s = 0.5f + (float)rng.NextDouble() * 2.5f;
            box.transform.position = new Vector3(rng.Next(-40, 40), s / 2, rng.Next(-40, 40));
            box.transform.localScale = Vector3.one * s;
            box.GetComponent<Renderer>().material.color = Color.HSVToRGB((float)rng.NextDouble(), 0.5f, 0.9f);
        }
        if (FindObjectOfType<Light>() == null)
        {
            var sun = new GameObject("Sun").AddComponent<Light>();
            sun.type = LightType.Directional;
            sun.transform.rotation = Quaternion.Euler(40, 30, 0);
        }
    }

    void Update()
    {
        // The same action vector the daemon receives moves the camera, so what the model sees
        // and what the player does agree (mouse deltas are degrees of rotation this frame).
        float[] a = _actions.Sample();
        System.Func<string, float> act = name => a[ActionLayout.Index(name)];
        _yaw += act("mouse_dx");
        _pitch = Mathf.Clamp(_pitch - act("mouse_dy"), -80, 80);
        _cam.transform.rotation = Quaternion.Euler(_pitch, _yaw, 0);
        float speed = moveSpeed * (act("run") > 0 ? 2 : 1) * Time.deltaTime;
        Vector3 move = _cam.transform.forward * (act("forward") - act("back")) + _cam.transform.right * (act("right") - act("left"));
        move.y = 0;
        _cam.transform.position += move.normalized * speed * (move.sqrMagnitude > 0 ? 1 : 0);

        for (int i = 0; i < prompts.Length && i < 9; i++)
            if (Input.GetKeyDown(KeyCode.Alpha1 + i)) _neural.prompt = prompts[i];
        if (Input.GetKeyDown(KeyCode.C)) _neural.Cut();
        if (Input.GetKeyDown(KeyCode.B))
            _neural.composite = _neural.composite == CompositeMode.Replace ? CompositeMode.Blend : CompositeMode.Replace;
    }
}
