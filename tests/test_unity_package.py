"""Static checks of the Unity package that need no Unity editor: every asset has a .meta file with a
unique GUID (Unity ignores meta-less files in packages installed from git), the manifest and the
assembly definitions are valid and wired as the README says, the core never touches UnityEngine,
and the Unity layer's references to shaders, passes and compute kernels exist. (The core itself is
compiled and run under mono in test_unity_core.py.)"""
from __future__ import annotations

import json
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "unity_client"


def _assets() -> list[Path]:
    """Files and folders Unity imports: everything except hidden and `~`-suffixed folders and metas."""
    out = []
    for p in sorted(PKG.rglob("*")):
        rel = p.relative_to(PKG)
        if any(part.endswith("~") or part.startswith(".") for part in rel.parts) or p.suffix == ".meta":
            continue
        out.append(p)
    return out


def test_every_asset_has_a_meta_with_a_unique_guid():
    guids = {}
    for asset in _assets():
        meta = asset.with_name(asset.name + ".meta")
        assert meta.is_file(), f"{asset.relative_to(PKG)} has no .meta"
        m = re.search(r"^guid: ([0-9a-f]{32})$", meta.read_text(), re.M)
        assert m, f"{meta.name}: no guid"
        assert m.group(1) not in guids, f"{meta.name} repeats the guid of {guids.get(m.group(1))}"
        guids[m.group(1)] = meta.name
        assert ("folderAsset: yes" in meta.read_text()) == asset.is_dir(), meta.name
    for meta in PKG.rglob("*.meta"):  # no orphans left behind by a rename
        assert meta.with_name(meta.name[: -len(".meta")]).exists(), f"orphan {meta.relative_to(PKG)}"
    assert len(guids) > 30


def test_manifest_and_assembly_definitions():
    manifest = json.loads((PKG / "package.json").read_text())
    assert re.fullmatch(r"com\.[a-z0-9-]+\.[a-z0-9.-]+", manifest["name"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"]) and re.fullmatch(r"\d{4}\.\d", manifest["unity"])
    for sample in manifest["samples"]:
        assert (PKG / sample["path"]).is_dir() and any((PKG / sample["path"]).glob("*.cs"))
    asm = {json.loads(p.read_text())["name"]: json.loads(p.read_text()) for p in PKG.rglob("*.asmdef")}
    assert asm["Neurender.Core"]["noEngineReferences"] is True
    assert "Neurender.Core" in asm["Neurender.Runtime"]["references"]
    assert asm["Neurender.Editor"]["includePlatforms"] == ["Editor"]
    # the mono test program never compiles inside Unity
    assert asm["Neurender.Core.MonoTests"]["defineConstraints"] == ["NEURENDER_MONO_TESTS"]
    defines = {d["define"] for d in asm["Neurender.Runtime"]["versionDefines"]}
    urp = (PKG / "Runtime" / "NeuralRendererFeature.cs").read_text()
    assert "NEURENDER_URP" in defines and urp.lstrip().startswith("//") and "#if NEURENDER_URP" in urp


def test_core_is_plain_csharp():
    for cs in (PKG / "Runtime" / "Core").glob("*.cs"):
        text = re.sub(r"//.*", "", cs.read_text())  # code only, not comments
        assert not re.search(r"\bUnity(Engine|Editor)\b", text), f"{cs.name} references Unity"
        assert not re.search(r"\bunsafe\b", text), f"{cs.name} needs unsafe code (the asmdef does not allow it)"


def test_unity_layer_references_exist():
    runtime = (PKG / "Runtime" / "NeuralRenderer.cs").read_text()
    shaders_dir = PKG / "Runtime" / "Resources" / "Neurender"
    declared = {}
    for sh in shaders_dir.glob("*.shader"):
        text = sh.read_text()
        name = re.search(r'^Shader "([^"]+)"', text, re.M).group(1)
        declared[name] = len(re.findall(r"^\s*Pass\b", text, re.M))
    for name in re.findall(r'Shader\.Find\("([^"]+)"\)', runtime):
        assert name in declared, f"Shader.Find({name!r}) but no such shader in Resources"
    passes = [int(n) for stmt in re.findall(r"c\.Pass = ([^;]+);", runtime) for n in re.findall(r"\d+", stmt)]
    assert sorted(set(passes)) == list(range(declared["Hidden/Neurender/Capture"])), passes
    compute = (shaders_dir / "NeurenderPack.compute").read_text()
    kernels = set(re.findall(r"#pragma kernel (\w+)", compute))
    used = set(re.findall(r'"(Pack\w+)"', runtime))
    assert used and used <= kernels
    assert re.search(r'Resources\.Load<ComputeShader>\("Neurender/NeurenderPack"\)', runtime)
    for prop in re.findall(r'PropertyToID\("(_\w+)"\)', runtime):
        shader_text = compute + "".join(p.read_text() for p in shaders_dir.glob("*.shader"))
        assert prop in shader_text, f"{prop} is set from C# but no shader declares it"


def test_unity_layer_parses():
    """The Unity layer is compiled only by Unity (no UnityEngine here, and none is faked), but its C#
    syntax is checked with `mcs --parse` (parser only, no name resolution), once as the built-in
    pipeline with the legacy Input Manager sees it and once with URP and the Input System defined."""
    import subprocess

    from _unity_build import require_tools
    require_tools()
    files = [str(p) for p in (PKG / "Runtime").glob("*.cs")] + [str(p) for p in (PKG / "Editor").glob("*.cs")] + \
            [str(p) for p in (PKG / "Samples~").rglob("*.cs")]
    assert len(files) >= 5
    for defines in ([], ["-define:NEURENDER_URP", "-define:NEURENDER_INPUT_SYSTEM"]):
        r = subprocess.run(["mcs", "--parse", *defines, *files], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
