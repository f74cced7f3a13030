"""`auto-infer k8s --out DIR` and secrets (issue 21.2, 21.4, 21.8): the folder keeps a list of our own
files and a render removes only those; what kubectl would also read must be a regular UTF-8 file;
a credential in control.env becomes a Secret reference, never a ConfigMap value."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from auto_infer.core.netns import can_unshare
from auto_infer.k8s import outdir, podconfig
from tests import k8s_checks as checks
from tests.helpers import CLI, clean_env
from tests.test_k8s_semantics import SHIPPED, TWO_NODE, cli, kind

QWEN = SHIPPED / "sglang-qwen2-vl-7b-tp2.toml"


def test_a_render_removes_only_what_the_last_render_wrote(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc, _, err = cli(tmp_path, TWO_NODE, "--out", str(out))
    assert rc == 0, err
    lws = (out / "30-lws-glm_4_7_2node.yaml").read_text()
    (out / "30-lws-glm_4_7_2node.bak.yaml").write_text(lws)          # the user's copies: same header
    (out / "my-lws.yaml").write_text(lws)
    (out / "31-service-glm_4_7_2node.yaml").write_text("# edited by hand\n")
    rc, _, err = cli(tmp_path, QWEN, "--out", str(out))               # another config: other files
    assert rc == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert "30-lws-glm_4_7_2node.yaml" not in names and "40-gateway-rbac.yaml" not in names   # ours: gone
    assert {"30-lws-glm_4_7_2node.bak.yaml", "my-lws.yaml", "31-service-glm_4_7_2node.yaml"} <= set(names)
    assert "kept" in err and "31-service-glm_4_7_2node.yaml" in err   # edited since: kept, and said
    assert "30-deployment-qwen2_vl_7b.yaml" in names and outdir.LIST in names
    listed = (out / outdir.LIST).read_text()
    assert "30-deployment-qwen2_vl_7b.yaml" in listed and "glm" not in listed


def test_a_folder_without_our_list_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "30-deployment-old.yaml").write_text("# Rendered by `auto-infer k8s` from x.toml\nkind: Deployment\n")
    rc, _, err = cli(tmp_path, QWEN, "--out", str(out))
    assert rc == 0, err
    assert (out / "30-deployment-old.yaml").is_file()


@pytest.mark.parametrize("make, said", [
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.write_bytes("kind: ConfigMap\n".encode("utf-16")), "is not UTF-8 text (it starts with a UTF-16"),
    (lambda p: os.mkfifo(p), "is a FIFO"),
    (lambda p: p.symlink_to("/nonexistent"), "is a symbolic link")])
def test_what_kubectl_would_read_must_be_a_regular_utf8_file(tmp_path: Path, make: object, said: str) -> None:
    names = ["x.yaml"] if "UTF-8" in said else ["x.yaml", "30-deployment-qwen2_vl_7b.yaml"]   # and one we write
    for name in names:
        out = tmp_path / name.split(".")[0]
        out.mkdir()
        make(out / name)  # type: ignore[operator]
        rc, _, err = cli(tmp_path, QWEN, "--out", str(out))
        assert rc == 1 and said in err and str(out / name) in err and "Traceback" not in err, err
        assert "fix:" in err and sorted(p.name for p in out.iterdir()) == [name]     # nothing written


CREDENTIALS = {"HTTPS_PROXY": "http://user:PW-s3cret@proxy:3128", "GITHUB_PAT": "ghp_" + "a" * 36,
               "DB_URL": "postgres://u:pw-s3cret@db:5432/x", "HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz",
               "LOG_LEVEL": "debug"}


def test_credentials_in_control_env_become_secret_references(tmp_path: Path) -> None:
    text = QWEN.read_text() + "\n[instance.qwen2_vl_7b.control.env]\n" + "".join(
        f'{k} = "{v}"\n' for k, v in CREDENTIALS.items())
    rc, all_docs, err = cli(tmp_path, text)
    assert rc == 0, err
    rendered = "\n".join(str(d) for d in all_docs)
    for value in ("PW-s3cret", "ghp_aaaa", "pw-s3cret", "hf_abcdef"):
        assert value not in rendered and value not in err
    c = kind(all_docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    assert refs == {
        k: {"name": podconfig.ENV_SECRET, "key": k} for k in ("DB_URL", "GITHUB_PAT", "HF_TOKEN", "HTTPS_PROXY")
    }
    assert 'LOG_LEVEL = "debug"' in kind(all_docs, "ConfigMap")["data"]["sglang.toml"]
    assert checks.variables_defined(all_docs) == []                     # $(HTTPS_PROXY) is defined before use
    assert "Secret auto-infer-env (keys DB_URL, GITHUB_PAT, HF_TOKEN, HTTPS_PROXY)" in err


@pytest.mark.parametrize("extra, key", [
    ('api_key = "sk-abcdefghijklmnopqrstuvwx"', "api_key"),
    ('hf_token = "hf_abcdefghijklmnopqrstuvwxyz"', "hf_token"),
    ('download_dir = "https://u:pw-s3cret@host/x"', "download_dir"),
    ('extra_args = ["--api-key", "s3cret-plain"]', "extra_args"),
    ('extra_args = "--hf-token abcdefghij-s3cret"', "extra_args")])
def test_credentials_elsewhere_are_refused_without_showing_them(tmp_path: Path, extra: str, key: str) -> None:
    text = QWEN.read_text().replace("[instance.qwen2_vl_7b.server]\n", f"[instance.qwen2_vl_7b.server]\n{extra}\n")
    rc, _, err = cli(tmp_path, text)
    assert rc == 1 and key in err and "would be stored in a ConfigMap" in err and "Traceback" not in err, err
    assert "s3cret" not in err and "abcdefghij" not in err


@pytest.mark.parametrize("args, said", [
    (["--namespace", "LLM space"], "--namespace 'LLM space' is not a Kubernetes name"),
    (["--claim", "-x"], "--claim '-x' is not a Kubernetes name"),
    (["--storage-class", "Fast_SSD"], "--storage-class 'Fast_SSD' is not a Kubernetes name"),
    (["--storage", "lots"], "--storage 'lots' is not a Kubernetes quantity"),
    (["--shm-size", "32 GB"], "--shm-size '32 GB' is not a Kubernetes quantity"),
    (["--image", "my image"], "--image 'my image' is not an image reference"),
    (["--bundle", "../x.tar"], "--bundle '../x.tar' is not a path inside the claim")])
def test_options_kubernetes_would_refuse_are_refused_first(tmp_path: Path, args: list[str], said: str) -> None:
    out = tmp_path / "out"
    rc, _, err = cli(tmp_path, QWEN, "--out", str(out), *args)
    assert rc == 1 and said in err and "fix:" in err and "Traceback" not in err, err
    assert not out.exists()


def test_an_edited_render_or_a_users_own_file_of_our_name_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc, _, err = cli(tmp_path, QWEN, "--out", str(out))
    assert rc == 0, err
    job = out / "20-job-install.yaml"
    rc, _, err = cli(tmp_path, QWEN, "--out", str(out))             # unedited: rendered again, silently
    assert rc == 0, err
    job.write_text(job.read_text() + "# my edit\n")
    rc, _, err = cli(tmp_path, QWEN, "--out", str(out))
    assert rc == 1 and "Traceback" not in err
    assert f"{job} would be replaced, but it was edited since" in err
    assert job.read_text().endswith("# my edit\n")                   # nothing written
    other = tmp_path / "other"
    other.mkdir()
    (other / "20-job-install.yaml").write_text("kind: Job  # mine\n")
    rc, _, err = cli(tmp_path, QWEN, "--out", str(other))
    assert rc == 1 and "auto-infer k8s did not write it" in err
    assert (other / "20-job-install.yaml").read_text() == "kind: Job  # mine\n"
    assert not (other / "30-deployment-qwen2_vl_7b.yaml").exists()   # refused before writing anything


def test_an_output_folder_that_cannot_be_made_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    rc, _, err = cli(tmp_path, QWEN, "--out", str(tmp_path / "afile" / "sub"))
    assert rc == 1 and "Traceback" not in err and "internal error" not in err
    assert "a part of its path is a file" in err


def test_a_model_path_on_no_mounted_volume_is_warned_about(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text('[instance.a.server]\nmodel_path = "/hard/volume/data/llm-models/x"\nport = 30000\n'
                      '[instance.b.server]\nmodel_path = "/llm-models/y"\nport = 30001\n'
                      '[instance.c.server]\nmodel_path = "Qwen/Qwen2-0.5B"\nport = 30002\n')
    rc, _, err = cli(tmp_path, config, "--out", str(tmp_path / "out"))
    assert rc == 0, err
    assert "instance a: its model_path /hard/volume/data/llm-models/x is on no volume the pods mount" in err
    assert "instance b:" not in err and "instance c:" not in err      # under /llm-models; a Hub id


@pytest.mark.skipif(not can_unshare() or not shutil.which("unshare"), reason="needs root and unshare -m")
@pytest.mark.parametrize("under", ["", "new"])
def test_a_read_only_output_folder_is_a_user_error(tmp_path: Path, under: str) -> None:
    """--out on a read-only mount, or a new folder inside one: exit 1 naming it (was exit 3, EROFS)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    out = ro / under if under else ro
    script = f'mount -t tmpfs -o ro tmpfs "{ro}" && exec "$@"'
    env = clean_env({"AUTO_INFER_WORKSPACE_DIR": str(tmp_path / "ws"), "AUTO_INFER_SGLANG_CONFIG": str(QWEN)})
    r = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *CLI, "k8s", "--out", str(out)], env=env,
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 1 and "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert f"cannot write the manifests into {out}: Read-only file system" in r.stderr
    assert f"where: {out}" in r.stderr and "fix:" in r.stderr
