// Window > neurender > Monitor: per NeuralRenderer in the scene, the connection, the session, the
// round-trip latency (last, p50, p95 and a graph of the recent frames) and every way a frame can
// go missing: skipped by the client (no free slot / readback error), dropped by the daemon (a
// newer frame replaced it), failed (error reply), lost (the daemon died with it).
using Neurender.Core;
using UnityEditor;
using UnityEngine;

namespace Neurender.Editor
{
    public sealed class NeurenderMonitorWindow : EditorWindow
    {
        Vector2 _scroll;

        [MenuItem("Window/neurender/Monitor")]
        public static void Open() => GetWindow<NeurenderMonitorWindow>("neurender");

        void OnInspectorUpdate() => Repaint(); // ~10 times a second while playing

        void OnGUI()
        {
            if (!Application.isPlaying)
            {
                EditorGUILayout.HelpBox("Enter Play Mode: the monitor shows every active NeuralRenderer.", MessageType.Info);
                return;
            }
#if UNITY_2023_1_OR_NEWER
            var renderers = Object.FindObjectsByType<NeuralRenderer>(FindObjectsSortMode.None);
#else
            var renderers = Object.FindObjectsOfType<NeuralRenderer>();
#endif
            if (renderers.Length == 0) { EditorGUILayout.HelpBox("No active NeuralRenderer.", MessageType.Info); return; }
            _scroll = EditorGUILayout.BeginScrollView(_scroll);
            foreach (var nr in renderers) Draw(nr);
            EditorGUILayout.EndScrollView();
        }

        static void Draw(NeuralRenderer nr)
        {
            EditorGUILayout.LabelField(nr.name, EditorStyles.boldLabel);
            EditorGUILayout.LabelField("Status", nr.Status);
            if (!string.IsNullOrEmpty(nr.LastError)) EditorGUILayout.HelpBox(nr.LastError, MessageType.Warning);
            NeurenderClient client = nr.Client;
            if (client != null && client.Welcome != null)
            {
                var r = client.Welcome.Renderer;
                EditorGUILayout.LabelField("Daemon", $"pid {client.Welcome.Pid}, {r["backend"]} / {r["model"] ?? "-"} on {r["device"]}");
                EditorGUILayout.LabelField("Reconnects / restarts", $"{client.Reconnects} / {client.Restarts}");
            }
            Session s = nr.Session;
            if (s == null || s.Info == null) { EditorGUILayout.Space(); return; }
            SessionStats st = s.Stats;
            EditorGUILayout.LabelField("Session", $"{s.Id}  {s.Width}x{s.Height}  slots {s.Info.Slots}  reopened {st.Reopened}");
            EditorGUILayout.LabelField("Latency (ms)", $"last {st.LastLatencyMs:F1}   p50 {st.LatencyQuantile(0.5):F1}   p95 {st.LatencyQuantile(0.95):F1}   render {st.LastRenderMs:F1}");
            EditorGUILayout.LabelField("Frames", $"sent {st.Submitted}   done {st.Done}   in flight {s.InFlightCount}");
            EditorGUILayout.LabelField("Missing frames", $"skipped {nr.SkippedFrames}   dropped {st.Dropped}   failed {st.Failed}   lost {st.Lost}   unsent {st.SendFailures}");
            DrawLatencyGraph(st.Latencies());
            if (nr.NeuralFrame != null)
            {
                Rect r = GUILayoutUtility.GetAspectRect((float)nr.NeuralFrame.width / nr.NeuralFrame.height, GUILayout.MaxWidth(320));
                GUI.DrawTexture(r, nr.NeuralFrame, ScaleMode.ScaleToFit, false);
            }
            EditorGUILayout.Space();
        }

        // One bar per recent frame, scaled to the window's max; the line marks 33 ms (30 fps).
        static void DrawLatencyGraph(double[] ms)
        {
            Rect area = GUILayoutUtility.GetRect(200, 60, GUILayout.ExpandWidth(true));
            EditorGUI.DrawRect(area, new Color(0.12f, 0.12f, 0.12f));
            if (ms.Length == 0) return;
            double max = 40;
            foreach (double v in ms) if (v > max) max = v;
            float bw = area.width / SessionStats.Window;
            for (int i = 0; i < ms.Length; i++)
            {
                float h = (float)(ms[i] / max) * area.height;
                var bar = new Rect(area.x + i * bw, area.yMax - h, Mathf.Max(1, bw - 1), h);
                EditorGUI.DrawRect(bar, ms[i] > 33.3 ? new Color(0.9f, 0.4f, 0.2f) : new Color(0.3f, 0.8f, 0.4f));
            }
            float y = area.yMax - (float)(33.3 / max) * area.height;
            EditorGUI.DrawRect(new Rect(area.x, y, area.width, 1), Color.white);
        }
    }
}
