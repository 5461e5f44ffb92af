# ctest-labels: heavy
# (normal build only: it installs the build and links a plain program against
# libshoalclient, which an ASan build's library cannot serve)
"""test_install.py -- what `cmake --install` delivers, and the C client
library through pkg-config.

- `cmake --install` into a temporary prefix: `man shoal` and `man
  shoal-register` work and say what --help says; bash completion (sourced,
  then asked like bash would, through compgen) completes commands, flags and
  the service names the agent knows.
- The C example (examples/client_example.c) built through pkg-config from the
  build tree (shoal-client-uninstalled.pc) and from an installed prefix that
  was moved elsewhere afterwards (the .pc is relocatable), then run against a
  real agent: it registers, lists, gets a change callback when another
  instance appears, picks it, deregisters.

Run: /usr/bin/python3 test_install.py --shoal build/shoal
"""

import os
import re
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import FAST, check, run_tests, test, wait_until  # noqa: E402

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_dir(h):
    return os.path.dirname(h.shoal)


def sh(argv, env=None, timeout=120, **kw):
    p = subprocess.run(argv, capture_output=True, timeout=timeout, env=env, **kw)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def install(h, prefix):
    rc, out, err = sh(["cmake", "--install", build_dir(h), "--prefix", prefix])
    check(rc == 0, lambda: "cmake --install failed:\n%s\n%s" % (out, err))


def man_text(mandir, page):
    env = dict(os.environ, MANWIDTH="100", MAN_KEEP_FORMATTING="0")
    rc, out, err = sh(["man", "-M", mandir, page], env=env)
    check(rc == 0, lambda: "man %s: exit %d: %s" % (page, rc, err))
    return re.sub(r".\x08", "", out)  # no overstrike


@test("cmake --install: man shoal and man shoal-register say what --help says")
def t_man(h):
    prefix = os.path.join(h.tmp, "prefix")
    install(h, prefix)
    mandir = os.path.join(prefix, "share", "man")
    page = man_text(mandir, "shoal-register")
    check("shoal-register - register a service instance with the agent" in page, page[:500])
    help_text = h.cli(["register", "--help"]).out
    for flag in re.findall(r"^  (--[a-z-]+)", help_text, re.M):
        check(flag in page, "man shoal-register lacks %s" % flag)
    check("--check-tcp IP:PORT" in page, page)
    top = man_text(mandir, "shoal")
    for cmd in ("agent", "register", "join", "watch", "keygen"):
        check(re.search(r"^\s+%s\s" % cmd, top, re.M), "man shoal lacks %s" % cmd)
    check("SHOAL_HTTP_ADDR" in top, top)
    agent = man_text(mandir, "shoal-agent")
    flags = re.findall(r"^  --([a-z0-9-]+)", h.cli(["agent", "--help"]).out, re.M)
    for f in flags:
        check("--" + f in agent, "man shoal-agent lacks --%s" % f)
    man1 = os.path.join(prefix, "share", "man", "man1")
    pages = sorted(os.listdir(man1))
    check(len(pages) >= 17 and "shoal-agent.1" in pages, pages)
    # groff's own warnings, for every page at once
    rc, _, err = sh(["groff", "-man", "-Tutf8", "-ww", "-z"] + [os.path.join(man1, p)
                                                              for p in pages])
    check(rc == 0 and not err.strip(), "groff warnings: %s" % err)
    check(os.access(os.path.join(prefix, "bin", "shoal"), os.X_OK), "no bin/shoal")


def complete(script, words, env=None):
    """What bash completion offers for the line `words` (last word = the one
    being completed)."""
    prog = ('source %s\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\n_shoal\nprintf "%%s\\n" "${COMPREPLY[@]}"'
            % (script, " ".join("'%s'" % w for w in words), len(words) - 1))
    rc, out, err = sh(["bash", "--norc", "--noprofile", "-c", prog], env=env)
    check(rc == 0, lambda: "bash: %s" % err)
    return sorted(w for w in out.split("\n") if w)


@test("bash completion completes commands, flags and the agent's service names")
def t_completion(h):
    prefix = os.path.join(h.tmp, "prefix")
    install(h, prefix)
    script = os.path.join(prefix, "share", "bash-completion", "completions", "shoal")
    shoal = os.path.join(prefix, "bin", "shoal")
    check(complete(script, [shoal, "re"]) == ["register", "resolve"], complete(script, [shoal, "re"]))
    got = complete(script, [shoal, "agent", "--retry-"])
    check(got == ["--retry-interval", "--retry-join", "--retry-max", "--retry-max-interval"], got)
    got = complete(script, [shoal, "register", "--check-"])
    check(got == ["--check-http", "--check-tcp"], got)
    check(complete(script, [shoal, "members", "--format", "j"]) == ["json"], "format")
    a = h.agent("c1", flags=FAST + ["--dns", "off"])
    for svc in ("web", "worker", "db"):
        r = h.cli(["register", "--service", svc, "--id", svc + "-1", "--address", "10.0.0.1",
                   "--port", "80", "--http", a.http])
        check(r.rc == 0, repr(r))
    env = dict(os.environ, SHOAL_HTTP_ADDR=a.http)
    got = complete(script, [shoal, "instances", "w"], env=env)
    check(got == ["web", "worker"], got)
    got = complete(script, [shoal, "register", "--http", a.http, "--service", ""])
    check(got == ["db", "web", "worker"], got)


def compile_example(h, pkg_path, out):
    env = dict(os.environ, PKG_CONFIG_PATH=pkg_path)
    rc, flags, err = sh(["pkg-config", "--cflags", "--libs", "shoal-client"], env=env)
    check(rc == 0, lambda: "pkg-config: %s" % err)
    cc = shutil.which("cc") or shutil.which("gcc")
    argv = [cc, "-Wall", "-Wextra", "-Werror", "-o", out,
            os.path.join(SRC, "examples", "client_example.c")] + flags.split() + ["-pthread"]
    rc, o, err = sh(argv)
    check(rc == 0, lambda: "%s\n%s%s" % (" ".join(argv), o, err))
    return flags


def run_example(h, exe, agent, env=None):
    """Runs the example; registers a second instance once it says ready."""
    p = subprocess.Popen([exe, "localhost:" + agent.http.rsplit(":", 1)[1], "demo", "me",
                          "8001"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        line = p.stdout.readline().decode()
        lines = [line]
        while line and line.strip() != "ready":
            line = p.stdout.readline().decode()
            lines.append(line)
        check(line.strip() == "ready", lambda: "no 'ready': %r %r" % (lines, p.stderr.read()))
        r = h.cli(["register", "--service", "demo", "--id", "other", "--address", "127.0.0.2",
                   "--port", "8002", "--http", agent.http])
        check(r.rc == 0, repr(r))
        out, err = p.communicate(timeout=40)
    finally:
        if p.poll() is None:
            p.kill()
    text = "".join(lines) + out.decode()
    check(p.returncode == 0, lambda: "example exit %s\n%s\n%s" % (p.returncode, text,
                                                                   err.decode()))
    check(re.search(r"^registered me$", text, re.M), text)
    check(re.search(r"^listed me 127\.0\.0\.1:8001 passing owner=%s \(alive\) tags=example "
                    r"meta=lang=c$" % agent.name, text, re.M), text)
    check(re.search(r"^change: demo has 2 passing$", text, re.M), text)
    check(re.search(r"^picked other 127\.0\.0\.2:8002 owner=%s$" % agent.name, text, re.M), text)
    check(re.search(r"^deregistered me$", text, re.M), text)
    # the example's own instance is gone, the other stays
    r = h.cli(["deregister", "other", "--http", agent.http])
    check(r.rc == 0, repr(r))


@test("the C example, built via pkg-config from the build tree, registers, lists, hears and picks")
def t_example_build_tree(h):
    exe = os.path.join(h.tmp, "client_example")
    flags = compile_example(h, build_dir(h), exe)
    check(os.path.join(SRC, "include") in flags, flags)
    a = h.agent("e1", flags=FAST + ["--dns", "off"])
    run_example(h, exe, a)
    # a bad agent address is an error with a message, not a silent NULL
    p = subprocess.run([exe, "localhost:x", "demo", "me", "1"], capture_output=True, timeout=20)
    check(p.returncode == 1 and b"agent address 'localhost:x' is not HOST:PORT" in p.stderr,
          p.stderr)


@test("installed, then moved: the relocatable .pc still builds the example, which runs")
def t_example_installed(h):
    first = os.path.join(h.tmp, "first")
    install(h, first)
    moved = os.path.join(h.tmp, "moved")
    os.rename(first, moved)
    pcdirs = [os.path.join(root) for root, _, files in os.walk(moved)
              if "shoal-client.pc" in files]
    check(len(pcdirs) == 1, pcdirs)
    exe = os.path.join(h.tmp, "client_example_installed")
    flags = compile_example(h, pcdirs[0], exe)
    check(moved in flags and first not in flags, flags)
    libdir = os.path.dirname(pcdirs[0])
    a = h.agent("e2", flags=FAST + ["--dns", "off"])
    env = dict(os.environ, LD_LIBRARY_PATH=libdir)
    run_example(h, exe, a, env=env)


if __name__ == "__main__":
    run_tests()
