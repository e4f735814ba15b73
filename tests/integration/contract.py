"""proto/openapi.yaml as a checker of real answers.

The spec is bundled to dereferenced JSON by redocly (installed by
scripts/setup.sh, the same tool that lints it), then every answer is checked
against the operation's documented statuses, schemas and headers with a
small JSON Schema validator (the subset the spec uses; stdlib only).
"""

import json
import os
import re
import subprocess
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SPEC = os.path.join(ROOT, "proto", "openapi.yaml")
REDOCLY = os.environ.get("CLOUD_REDOCLY", os.path.join(ROOT, ".tools", "node_modules", ".bin", "redocly"))


def load_spec():
    """The spec with every $ref resolved, as a dict; None when redocly is
    missing on a developer's machine (the callers skip). Under CI (CI set)
    a missing redocly is an error: scripts/setup.sh installs it there."""
    if not os.access(REDOCLY, os.X_OK):
        if os.environ.get("CI"):
            raise RuntimeError("redocly missing (%s) under CI; scripts/setup.sh installs it"
                               % REDOCLY)
        return None
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "openapi.json")
        r = subprocess.run([REDOCLY, "bundle", "--dereferenced", "--ext", "json", "-o", out, SPEC],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("redocly bundle failed:\n" + r.stdout)
        with open(out) as f:
            return json.load(f)


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate(schema, value, path="$"):
    """Returns a list of 'path: problem' strings; empty when value conforms."""
    errs = []
    if schema is True or schema is None or schema == {}:
        return errs
    if schema is False:
        return ["%s: no value allowed here" % path]
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        if not any(_TYPES[x](value) for x in types):
            return ["%s: %r is not of type %s" % (path, value, t)]
    if "const" in schema and value != schema["const"]:
        errs.append("%s: %r is not %r" % (path, value, schema["const"]))
    if "enum" in schema and value not in schema["enum"]:
        errs.append("%s: %r is not one of %r" % (path, value, schema["enum"]))
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append("%s: %r does not match %s" % (path, value, schema["pattern"]))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errs.append("%s: longer than %d" % (path, schema["maxLength"]))
        if "minLength" in schema and len(value) < schema["minLength"]:
            errs.append("%s: shorter than %d" % (path, schema["minLength"]))
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append("%s: %r < %r" % (path, value, schema["minimum"]))
        if "maximum" in schema and value > schema["maximum"]:
            errs.append("%s: %r > %r" % (path, value, schema["maximum"]))
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append("%s: more than %d items" % (path, schema["maxItems"]))
        if "items" in schema:
            for i, v in enumerate(value):
                errs += validate(schema["items"], v, "%s[%d]" % (path, i))
    if isinstance(value, dict):
        for k in schema.get("required", []):
            if k not in value:
                errs.append("%s: missing %r" % (path, k))
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                errs += validate(props[k], v, "%s.%s" % (path, k))
            elif "additionalProperties" in schema:
                errs += validate(schema["additionalProperties"], v, "%s.%s" % (path, k))
        if "propertyNames" in schema:
            for k in value:
                errs += validate(schema["propertyNames"], k, "%s{%s}" % (path, k))
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            errs.append("%s: more than %d properties" % (path, schema["maxProperties"]))
    for sub in schema.get("allOf", []):
        errs += validate(sub, value, path)
    if "oneOf" in schema:
        ok = sum(1 for sub in schema["oneOf"] if not validate(sub, value, path))
        if ok != 1:
            errs.append("%s: %r matches %d of oneOf, not exactly 1" % (path, value, ok))
    if "anyOf" in schema:
        if not any(not validate(sub, value, path) for sub in schema["anyOf"]):
            errs.append("%s: %r matches none of anyOf" % (path, value))
    return errs


def check(spec, method, template, resp):
    """Problems of one answer against the spec (empty list when it conforms).

    resp is harness.request's (status, headers, payload).
    """
    status, headers, body = resp
    item = spec["paths"].get(template)
    if item is None:
        return ["%s is not a path of the spec" % template]
    op = item.get(method.lower())
    if op is None:
        return ["%s %s is not an operation of the spec" % (method, template)]
    responses = op["responses"]
    r = responses.get(str(status)) or responses.get("default")
    if r is None:
        return ["%s %s answered %d, which the spec does not list (it lists %s)"
                % (method, template, status, ", ".join(sorted(responses)))]
    problems = []
    for name, h in (r.get("headers") or {}).items():
        got = headers.get(name)
        if got is None:
            problems.append("%s %s %d: no %s header" % (method, template, status, name))
        else:
            problems += ["%s header: %s" % (name, e) for e in validate(h.get("schema", {}), got, name)]
    content = r.get("content") or {}
    if not content:
        return problems
    ctype = (headers.get("Content-Type") or "").split(";")[0].strip()
    media = content.get(ctype)
    if media is None:
        return problems + ["%s %s %d: Content-Type %r, the spec has %s"
                           % (method, template, status, ctype, ", ".join(content))]
    if ctype == "application/json":
        problems += ["%s %s %d: %s" % (method, template, status, e)
                     for e in validate(media.get("schema", {}), body)]
    return problems
