import json

from conftest import run_cli


def test_evaluate_json_has_proxies_accounting_and_latency(tmp_path, cifar_dir):
    env = {"SHUFFLENAS_CACHE_DIR": str(tmp_path / "cache"), "SHUFFLENAS_LOCK_DIR": str(tmp_path)}
    args = ("evaluate", "v2_0.5x", "--proxy", "params_cifar", "--proxy", "grad_norm", "--data-dir", str(cifar_dir),
            "--latency", "--resolution", "32", "--json")
    out = run_cli(*args, env=env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc["proxies"]) == {"params_cifar", "grad_norm"}
    for key in ("params", "mflops", "mmac", "latency_ms", "latency_iqr_ms", "latency_runs", "latency_settings",
                "device_fingerprint"):
        assert key in doc, key
    assert doc["latency_settings"]["resolution"] == 32 and doc["latency_cached"] is False
    again = json.loads(run_cli(*args, env=env).stdout)
    assert again["latency_cached"] is True and again["latency_ms"] == doc["latency_ms"]
    fresh = json.loads(run_cli(*args, "--no-cache", env=env).stdout)
    assert fresh["latency_cached"] is False


def test_evaluate_bad_input_is_one_line(tmp_path):
    for args in (("evaluate", "v7_1.0x"), ("evaluate", "v2_0.5x", "--proxy", "naswot", "--data-dir", str(tmp_path / "no")),
                 ("evaluate", "v2_0.5x", "--latency", "--threads", "0"), ("evaluate", "v2_0.5x", "--resolution", "4")):
        out = run_cli(*args, env={"SHUFFLENAS_DATA": ""})
        assert out.returncode == 2, (args, out.stderr)
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
