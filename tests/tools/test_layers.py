"""Tests of tests/layers.py, the layering checker, on small trees made in a
temp directory: each test writes a docs/architecture.md and a few sources,
runs the checker as `make layers` does, and reads what it prints."""

import os
import subprocess
import sys
import textwrap

import pytest

CHECKER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "layers.py")

DOC = """\
# architecture

## Layers

```layers
main
conn
h1 h2
http
common
```

```modules
http: h1_parse.c
```
"""


def make_tree(root, files, doc=DOC):
    """Writes doc and files ({relative path: text}) under root."""
    files = dict(files)
    files["docs/architecture.md"] = doc
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def run(root):
    """Runs the checker on root. Returns (exit status, stdout lines)."""
    p = subprocess.run([sys.executable, CHECKER, "--root", str(root)],
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout.splitlines()


# A tree that follows every rule: downward includes, a peer include, a file
# that the modules block maps, and a pst_conn_ function defined in conn.c.
GOOD = {
    "src/main.c": '#include "postern/conn.h"\n#include "postern/common.h"\n',
    "src/conn.c": '#include "postern/conn.h"\n#include "postern/h1.h"\n\n'
                  'int pst_conn_send(int x) {\n  return x;\n}\n',
    "include/postern/conn.h": "int pst_conn_send(int x);\n",
    "src/h1.c": '#include "postern/h1.h"\n#include "postern/h2.h"\n#include "postern/http.h"\n',
    "include/postern/h1.h": "",
    "src/h2.c": '#include "postern/h2.h"\n',
    "include/postern/h2.h": "",
    "src/h1_parse.c": '#include "postern/http.h"\n#include "postern/common.h"\n',
    "include/postern/http.h": "",
    "include/postern/common.h": "",
}


def test_a_tree_that_follows_the_layers_passes(tmp_path):
    make_tree(tmp_path, GOOD)
    assert run(tmp_path) == (0, [])


def test_an_upward_include_names_both_modules_and_their_layers(tmp_path):
    files = dict(GOOD)
    files["src/h1_parse.c"] = '#include "postern/http.h"\n\n#include "postern/h2.h"\n'
    make_tree(tmp_path, files)
    status, out = run(tmp_path)
    assert status == 1
    assert out == ["src/h1_parse.c:3: http (layer 4) includes postern/h2.h of h2 (layer 3), "
                   "a layer above it"]


def test_a_local_header_of_a_module_above_is_an_upward_include(tmp_path):
    # "x.h" is found beside the includer, as the compiler finds it; the
    # modules block puts h1_parse.c in http, below h2.
    files = dict(GOOD)
    files["src/h2_int.h"] = ""
    files["src/h1_parse.c"] = '#include "h2_int.h"\n'
    make_tree(tmp_path, files, DOC.replace("```modules\n", "```modules\nh2: h2_int.h\n"))
    status, out = run(tmp_path)
    assert status == 1
    assert out == ["src/h1_parse.c:1: http (layer 4) includes h2_int.h of h2 (layer 3), "
                   "a layer above it"]


def test_a_cycle_among_peers_is_reported(tmp_path):
    files = dict(GOOD)
    files["src/h2.c"] = '#include "postern/h2.h"\n#include "postern/h1.h"\n'
    make_tree(tmp_path, files)
    status, out = run(tmp_path)
    assert status == 1
    assert out == ["src/h1.c:2: cycle: h1 -> h2 -> h1 (src/h1.c:2 includes postern/h2.h; "
                   "src/h2.c:2 includes postern/h1.h)"]


def test_a_longer_cycle_is_reported_once_in_full(tmp_path):
    doc = DOC.replace("h1 h2\n", "h1 h2 tcp\n")
    files = dict(GOOD)
    files["src/h2.c"] = '#include "postern/tcp.h"\n'
    files["src/tcp.c"] = '#include "postern/h1.h"\n'
    files["include/postern/tcp.h"] = ""
    make_tree(tmp_path, files, doc)
    status, out = run(tmp_path)
    assert status == 1
    assert len(out) == 1
    assert out[0].startswith("src/h1.c:2: cycle: h1 -> h2 -> tcp -> h1 (")


def test_a_file_of_an_unknown_module_is_reported(tmp_path):
    files = dict(GOOD)
    files["src/relay.c"] = '#include "postern/common.h"\n'
    make_tree(tmp_path, files)
    status, out = run(tmp_path)
    assert status == 1
    assert out == ["src/relay.c:1: module relay is not in docs/architecture.md's layers"]


def test_a_pst_conn_definition_outside_conn_c_is_reported(tmp_path):
    files = dict(GOOD)
    files["src/h2.c"] = textwrap.dedent("""\
        #include "postern/h2.h"
        /* int pst_conn_commented(void) { return 0; } */
        static int helper(void) { return pst_conn_send(1); }

        const char *pst_conn_client_ip(const void *conn,
                                       int flags) {
          return 0;
        }
        """)
    # A prototype spread over two lines is not a definition.
    files["include/postern/conn.h"] = ("int pst_conn_send(int x);\n"
                                       "const char *pst_conn_why(int x, const char *fmt, ...)\n"
                                       "    __attribute__((format(printf, 2, 3)));\n")
    make_tree(tmp_path, files)
    status, out = run(tmp_path)
    assert status == 1
    assert out == ["src/h2.c:5: pst_conn_client_ip is defined here; "
                   "every pst_conn_ function is defined in src/conn.c "
                   "or another source file of the conn module"]


def test_a_types_header_may_be_included_from_any_layer(tmp_path):
    # common (the bottom layer) includes conn-t.h (conn's types), and conn
    # includes common: neither an upward include nor a cycle.
    files = dict(GOOD)
    files["include/postern/conn-t.h"] = '#include "postern/common.h"\n'
    files["include/postern/common.h"] = '#include "postern/conn-t.h"\n'
    files["src/h2.c"] = '#include "postern/conn-t.h"\n'
    make_tree(tmp_path, files)
    assert run(tmp_path) == (0, [])


def test_a_types_header_is_checked_as_a_file_of_its_module(tmp_path):
    # Its own includes count: http-t.h including h2.h is http including h2.
    files = dict(GOOD)
    files["include/postern/http-t.h"] = '#include "postern/h2.h"\n'
    make_tree(tmp_path, files)
    status, out = run(tmp_path)
    assert status == 1
    assert out == ["include/postern/http-t.h:1: http (layer 4) includes postern/h2.h of h2 "
                   "(layer 3), a layer above it"]


def test_a_commented_out_include_does_not_count(tmp_path):
    files = dict(GOOD)
    files["src/h2.c"] = '/*\n#include "postern/conn.h"\n*/\n// #include "postern/main.h"\n'
    make_tree(tmp_path, files)
    assert run(tmp_path) == (0, [])


@pytest.mark.parametrize("doc, expected", [
    ("# no blocks\n", "docs/architecture.md:1: no fenced code block with info string 'layers'"),
    (DOC.replace("h1 h2\n", "h1 h2 h1\n"), "docs/architecture.md:8: module h1 is listed twice"),
])
def test_a_broken_layers_block_is_reported(tmp_path, doc, expected):
    make_tree(tmp_path, GOOD, doc)
    status, out = run(tmp_path)
    assert status == 1
    assert out[0].startswith(expected)


def test_a_mapped_file_that_does_not_exist_is_only_a_warning(tmp_path):
    make_tree(tmp_path, GOOD, DOC.replace("h1_parse.c", "h1_parse.c h1_gone.c"))
    status, out = run(tmp_path)
    assert status == 0
    assert out == ["docs/architecture.md:14: warning: h1_gone.c is mapped to module http "
                   "but no such file is under src or include/postern"]
