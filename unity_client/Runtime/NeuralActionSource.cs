// The player's action vector for the daemon, in bridge/channels.py ACTION_LAYOUT order
// (Neurender.Core.ActionLayout): keys as 0/1, mouse deltas in degrees of camera rotation this
// frame. Defaults: WASD, Space jump, Left Ctrl crouch, Left Shift run, mouse look. Scripts (an AI
// player, a replay) can drive it instead with SetOverride.
using Neurender.Core;
using UnityEngine;
#if NEURENDER_INPUT_SYSTEM && !ENABLE_LEGACY_INPUT_MANAGER
using UnityEngine.InputSystem;
#endif

namespace Neurender
{
    [AddComponentMenu("neurender/Neural Action Source")]
    public sealed class NeuralActionSource : MonoBehaviour
    {
        [Header("Keys (legacy Input Manager; the Input System uses W A S D Space Ctrl Shift)")]
        public KeyCode forward = KeyCode.W;
        public KeyCode back = KeyCode.S;
        public KeyCode left = KeyCode.A;
        public KeyCode right = KeyCode.D;
        public KeyCode jump = KeyCode.Space;
        public KeyCode crouch = KeyCode.LeftControl;
        public KeyCode run = KeyCode.LeftShift;

        [Tooltip("Degrees of camera rotation per unit of mouse movement: the same factor your camera controller uses.")]
        public float degreesPerMouseUnit = 2f;

        float[] _override;
        readonly float[] _current = new float[ActionLayout.Dim];

        /// <summary>Use these values instead of the input devices (null returns to the devices).
        /// Length must be ActionLayout.Dim.</summary>
        public void SetOverride(float[] action)
        {
            if (action != null && action.Length != ActionLayout.Dim)
                throw new System.ArgumentException($"an action has {ActionLayout.Dim} values");
            _override = action;
        }

        /// <summary>A new array with this frame's action.</summary>
        public float[] Sample()
        {
            if (_override != null) return (float[])_override.Clone();
            System.Array.Clear(_current, 0, _current.Length);
            Set("forward", Key(forward)); Set("back", Key(back)); Set("left", Key(left)); Set("right", Key(right));
            Set("jump", Key(jump)); Set("crouch", Key(crouch)); Set("run", Key(run));
            Vector2 mouse = MouseDelta() * degreesPerMouseUnit;
            Set("mouse_dx", mouse.x);
            Set("mouse_dy", mouse.y);
            return (float[])_current.Clone();
        }

        void Set(string name, float v) => _current[ActionLayout.Index(name)] = v;

#if NEURENDER_INPUT_SYSTEM && !ENABLE_LEGACY_INPUT_MANAGER
        float Key(KeyCode code)
        {
            var kb = Keyboard.current;
            if (kb == null) return 0;
            switch (code)
            {
                case KeyCode.W: return kb.wKey.isPressed ? 1 : 0;
                case KeyCode.S: return kb.sKey.isPressed ? 1 : 0;
                case KeyCode.A: return kb.aKey.isPressed ? 1 : 0;
                case KeyCode.D: return kb.dKey.isPressed ? 1 : 0;
                case KeyCode.Space: return kb.spaceKey.isPressed ? 1 : 0;
                case KeyCode.LeftControl: return kb.leftCtrlKey.isPressed ? 1 : 0;
                case KeyCode.LeftShift: return kb.leftShiftKey.isPressed ? 1 : 0;
                default: return 0;
            }
        }

        Vector2 MouseDelta()
        {
            var m = Mouse.current;
            // Input System deltas are in pixels; scale to the legacy axis' order of magnitude.
            return m == null ? Vector2.zero : m.delta.ReadValue() * 0.05f;
        }
#else
        float Key(KeyCode code) => Input.GetKey(code) ? 1 : 0;
        Vector2 MouseDelta() => new Vector2(Input.GetAxisRaw("Mouse X"), Input.GetAxisRaw("Mouse Y"));
#endif
    }
}
