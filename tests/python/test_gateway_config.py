"""Configuration problems all at once, each located in the file with the nearest known key;
`cairn gateway check` resolves a configuration and verifies its bundle without serving."""


from conftest import flat, run
from gateway_harness import base_config, make_signed_bundle


def config_with(workdir, server_lines, second_model):
    """The harness's config with lines added to `[server]` and a second model of the catalogue
    after a good one; the file, and where in it a line starting with a key is."""
    make_signed_bundle(workdir)
    text = base_config(workdir).replace("shutdown_grace_ms = 3000", "shutdown_grace_ms = 3000\n" + server_lines) + f"""
[[models]]
id = "fast"
provider = "mock"

[[models]]
id = "second"
{second_model}
"""
    cfg = workdir / "c.toml"
    cfg.write_text(text)
    lines = text.splitlines()
    return cfg, lambda key: next(i + 1 for i, line in enumerate(lines) if line.startswith(key))


def test_every_problem_in_one_run_located_with_suggestions(workdir):
    cfg, where = config_with(workdir, "max_body_byte = 10\nlisten_addr = 1",
                             'base_url = "http://example.invalid/v1"\n\n[guardrails]\nenabled = "yes"')
    r = run(["gateway", "serve", "--config", str(cfg)], cwd=workdir, check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    err = flat(r.stderr)
    assert f"c.toml:{where('max_body_byte')}:1: `server.max_body_byte`: unknown field" in err, err
    assert "did you mean `max_body_bytes`?" in err
    assert f"c.toml:{where('listen_addr')}:1: `server.listen_addr`" in err
    assert f"c.toml:{where('base_url')}:1: `models[1].base_url`" in err
    assert f"c.toml:{where('enabled')}:1: `guardrails.enabled`: invalid type" in err
    # `gateway check` reports the same, without serving.
    c = run(["gateway", "check", "--config", str(cfg)], cwd=workdir, check=False)
    assert c.returncode == 2 and "did you mean `max_body_bytes`?" in flat(c.stderr)


def test_value_problems_are_located_too(workdir):
    """The second phase (values the types accept but the gateway cannot use) names the line."""
    cfg, where = config_with(workdir, "max_body_bytes = 0", 'provider = "nosuch"')
    nosuch = where('provider = "nosuch"')
    for command in ["serve", "check"]:
        r = run(["gateway", command, "--config", str(cfg)], cwd=workdir, check=False)
        assert r.returncode == 2, r.stdout + r.stderr
        err = flat(r.stderr)
        assert f"c.toml:{where('max_body_bytes')}:1: `server.max_body_bytes` must be positive" in err, err
        assert f"c.toml:{nosuch}:1: `models[1].provider` `nosuch` is not a provider" in err, err
    # A value set from the environment has no line in the file, and says so by having none.
    r = run(["gateway", "check", "--config", str(cfg)], cwd=workdir, check=False,
            env={"CAIRN_ROUTING__MAX_ATTEMPTS": "0"})
    assert "- `routing.max_attempts` must be at least 1" in flat(r.stderr)


def test_check_verifies_the_bundle_and_serves_nothing(workdir):
    make_signed_bundle(workdir)
    cfg = workdir / "ok.toml"
    # A model needs only an id (the region, approval level and cost tier have defaults).
    cfg.write_text(base_config(workdir) + '\n[[models]]\nid = "fast"\nprovider = "mock"\n')
    ok = run(["gateway", "check", "--config", str(cfg)], cwd=workdir)
    assert "resolves" in ok.stdout and "verifies and decides" in ok.stdout, ok.stdout
    assert "listening" not in ok.stdout
    assert not (workdir / "records").exists(), "a check writes no records"
    (workdir / "bundle.tar").write_bytes(b"not a bundle")
    bad = run(["gateway", "check", "--config", str(cfg)], cwd=workdir, check=False)
    assert bad.returncode == 1 and "the bundle would not be in force" in bad.stderr, bad.stderr
