// What a client asks for when it opens a session, and the action vector layout it sends.
using System;
using System.Collections.Generic;

namespace Neurender.Core
{
    /// <summary>The player's action vector, one float per entry. This mirrors
    /// bridge/channels.py ACTION_LAYOUT (a C# build cannot import Python); tests/test_unity_core.py
    /// fails if the two ever differ.</summary>
    public static class ActionLayout
    {
        public static readonly string[] Names = { "forward", "back", "left", "right", "jump", "crouch", "run", "mouse_dx", "mouse_dy" };
        public static int Dim => Names.Length;

        public static int Index(string name)
        {
            int i = Array.IndexOf(Names, name);
            if (i < 0) throw new ArgumentException($"'{name}' is not in the action layout");
            return i;
        }
    }

    /// <summary>Per-frame camera constants, name -> number of floats: mirrors bridge/channels.py
    /// CONSTANTS_LAYOUT (checked by tests/test_unity_core.py). 4x4 matrices are row-major for column
    /// vectors, without jitter.</summary>
    public static class CameraConstantsLayout
    {
        public static readonly KeyValuePair<string, int>[] Entries =
        {
            new KeyValuePair<string, int>("world_to_view", 16),
            new KeyValuePair<string, int>("view_to_clip", 16),
            new KeyValuePair<string, int>("clip_to_view", 16),
            new KeyValuePair<string, int>("clip_to_prev_clip", 16),
            new KeyValuePair<string, int>("camera_position", 3),
            new KeyValuePair<string, int>("camera_forward", 3),
            new KeyValuePair<string, int>("camera_up", 3),
            new KeyValuePair<string, int>("camera_right", 3),
            new KeyValuePair<string, int>("near", 1),
            new KeyValuePair<string, int>("far", 1),
            new KeyValuePair<string, int>("fov_y_deg", 1),
            new KeyValuePair<string, int>("aspect", 1),
            new KeyValuePair<string, int>("jitter_px", 2),
            new KeyValuePair<string, int>("dt", 1),
        };

        /// <summary>Throws ArgumentException unless every entry is a known name with the right length.</summary>
        public static void Validate(IDictionary<string, float[]> constants)
        {
            foreach (var kv in constants)
            {
                int n = -1;
                foreach (var e in Entries) if (e.Key == kv.Key) n = e.Value;
                if (n < 0) throw new ArgumentException($"'{kv.Key}' is not a camera constant");
                if (kv.Value == null || kv.Value.Length != n) throw new ArgumentException($"'{kv.Key}' takes {n} floats");
            }
        }
    }

    public sealed class SessionConfig
    {
        public int Width = 512, Height = 288;
        /// <summary>Declared input channels, name -> dtype, in the order their pixels are laid out
        /// (names and allowed dtypes: bridge/channels.py CHANNELS).</summary>
        public List<KeyValuePair<string, string>> Channels = new List<KeyValuePair<string, string>>();
        public int ActionDim = ActionLayout.Dim;
        public string OutputFormat = "rgba8";
        public string Transport = "shm";
        public string Prompt;
        /// <summary>Sampler steps; 0 leaves the daemon's default.</summary>
        public int Steps;
        public int Slots = 3;
        /// <summary>A look name: the daemon records this session (engine channels, the game's own frame in
        /// the "final" channel, actions, constants) for `neurender train --look`. Null: not recorded.</summary>
        public string Record;

        public SessionConfig Channel(string name, string dtype)
        {
            Channels.Add(new KeyValuePair<string, string>(name, dtype));
            return this;
        }

        public SessionConfig Clone()
        {
            var c = (SessionConfig)MemberwiseClone();
            c.Channels = new List<KeyValuePair<string, string>>(Channels);
            return c;
        }
    }
}
