"""JSON Schema (as OpenAI clients write it) -> Gemini's `Schema` (an OpenAPI 3.0 subset).

Gemini takes function parameters (`FunctionDeclaration.parameters`) and structured
output (`generationConfig.responseSchema`) in its own Schema object, which covers part
of JSON Schema. `to_gemini_schema` translates what has an exact counterpart and raises
`SchemaError` naming the first construct that has none, so a client gets a 400 that
says what to change instead of a schema silently loosened.

Translated: `type` (a `[T, "null"]` pair becomes `nullable`), `format` (the ones Gemini
knows per type), `title`, `description`, `nullable`, `enum` (of strings), `const` (a
string), `default`, `example`/`examples`, `properties` (their order kept through
`propertyOrdering`: Gemini would otherwise order them alphabetically), `required`,
`items`, `minItems`/`maxItems`, `minProperties`/`maxProperties`,
`minLength`/`maxLength`, `pattern`, `minimum`/`maximum`, `anyOf` (a branch of
`{"type": "null"}` becomes `nullable`), single-branch `allOf`, and local `$ref`s into
`$defs`/`definitions` (inlined; a recursive reference is refused).

Dropped because they change nothing Gemini generates: `$schema`, `$id`, `$comment`,
`additionalProperties: false` (Gemini never adds undeclared properties),
`readOnly`/`writeOnly`/`deprecated`, `uniqueItems: false`, `strict`-mode leftovers.

Refused (SchemaError): `oneOf`, `not`, `if`/`then`/`else`, `patternProperties`,
`additionalProperties` other than false, `uniqueItems: true`, `multipleOf`,
`exclusiveMinimum`/`exclusiveMaximum`, `prefixItems`/tuple `items`, `contains`,
`dependentRequired`/`dependentSchemas`, `propertyNames`, `unevaluated*`, remote or
recursive `$ref`, enums of non-strings, several non-null types, free-form objects
(an object schema without properties; as a function's whole parameters it means "no
parameters" and the declaration gets none), unsupported formats.
"""

from __future__ import annotations

from typing import Any

TYPES = {"string": "STRING", "number": "NUMBER", "integer": "INTEGER", "boolean": "BOOLEAN",
         "array": "ARRAY", "object": "OBJECT", "null": "NULL"}
FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"}, "INTEGER": {"int32", "int64"}}
COPIED = ("title", "description", "default", "example", "minItems", "maxItems", "minProperties",
          "maxProperties", "minLength", "maxLength", "pattern", "minimum", "maximum", "nullable")
REFUSED = ("oneOf", "not", "if", "then", "else", "patternProperties", "multipleOf", "exclusiveMinimum",
           "exclusiveMaximum", "prefixItems", "contains", "minContains", "maxContains", "dependentRequired",
           "dependentSchemas", "dependencies", "propertyNames", "unevaluatedProperties", "unevaluatedItems",
           "$dynamicRef", "$anchor", "$recursiveRef")


class SchemaError(ValueError):
    """A JSON Schema construct Gemini's Schema cannot express; `path` says where."""

    def __init__(self, construct: str, path: str, detail: str = "") -> None:
        self.construct = construct
        self.path = path
        super().__init__(f"{construct} at {path or '/'} is not supported by google{': ' + detail if detail else ''}")


def to_gemini_schema(schema: Any, root_object: bool = False) -> dict[str, Any] | None:
    """Gemini's Schema for `schema`. `root_object`: the top level of function parameters,
    where an object without properties means "no parameters" (None is returned)."""
    if not isinstance(schema, dict):
        raise SchemaError("a schema that is not an object", "")
    converter = _Converter(schema)
    if root_object and _is_empty_object(schema):
        return None
    return converter.convert(schema, "")


def _is_empty_object(schema: dict[str, Any]) -> bool:
    return schema.get("type") in ("object", None) and not schema.get("properties") and not any(
        key in schema for key in ("anyOf", "allOf", "oneOf", "$ref", "items", "enum"))


class _Converter:
    __slots__ = ("_root", "_stack")

    def __init__(self, root: dict[str, Any]) -> None:
        self._root = root
        self._stack: list[str] = []

    def convert(self, schema: Any, path: str) -> dict[str, Any]:
        if schema is True or schema == {}:
            raise SchemaError("an unconstrained schema (any value)", path)
        if not isinstance(schema, dict):
            raise SchemaError("a schema that is not an object", path)
        ref = schema.get("$ref")
        if ref is not None:
            return self._ref(schema, ref, path)
        for key in REFUSED:
            if key in schema:
                raise SchemaError(key, path)
        extra = schema.get("additionalProperties")
        if extra is not None and extra is not False:
            raise SchemaError("additionalProperties", path, "only additionalProperties: false can be honoured")
        if schema.get("uniqueItems") is True:
            raise SchemaError("uniqueItems", path)
        all_of = schema.get("allOf")
        if all_of is not None:
            if not isinstance(all_of, list) or len(all_of) != 1:
                raise SchemaError("allOf", path, "only a single-schema allOf can be expressed")
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            inner = all_of[0]
            if isinstance(inner, dict) and "$ref" in inner:
                inner = self._resolve(inner["$ref"], f"{path}/allOf/0")
            if not isinstance(inner, dict):
                raise SchemaError("allOf", path)
            return self.convert({**inner, **merged}, path)

        out: dict[str, Any] = {}
        kind = self._type(schema, path, out)
        for key in COPIED:
            if key in schema:
                out[key] = schema[key]
        if "example" not in out and isinstance(schema.get("examples"), list) and schema["examples"]:
            out["example"] = schema["examples"][0]
        fmt = schema.get("format")
        if fmt is not None:
            if fmt not in FORMATS.get(kind or "", ()):
                raise SchemaError(f"format {fmt!r}", path, f"{kind or 'this type'} allows "
                                  + (", ".join(sorted(FORMATS[kind])) if kind in FORMATS else "no format"))
            out["format"] = fmt
        if "const" in schema:
            if not isinstance(schema["const"], str):
                raise SchemaError("const", path, "only a string const can be expressed (as a one-value enum)")
            out["type"] = kind = "STRING"
            out["enum"] = [schema["const"]]
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise SchemaError("enum", path, "expected a non-empty array")
            strings = [v for v in values if v is not None]
            if not all(isinstance(v, str) for v in strings):
                raise SchemaError("enum", path, "Gemini takes only enums of strings")
            if len(strings) < len(values):
                out["nullable"] = True
            out["type"] = kind = "STRING"
            out["enum"] = strings
        any_of = schema.get("anyOf")
        if any_of is not None:
            self._any_of(any_of, path, out)
        if kind == "OBJECT" or "properties" in schema:
            self._object(schema, path, out)
        if kind == "ARRAY" or "items" in schema:
            items = schema.get("items")
            if isinstance(items, list):
                raise SchemaError("items as an array (tuple validation)", path)
            if items is None:
                raise SchemaError("an array without items", path)
            out["items"] = self.convert(items, f"{path}/items")
        return out

    def _type(self, schema: dict[str, Any], path: str, out: dict[str, Any]) -> str | None:
        kind = schema.get("type")
        if kind is None:
            if "properties" in schema:
                kind = "object"
            elif "items" in schema:
                kind = "array"
            else:
                return None
        if isinstance(kind, list):
            non_null = [k for k in kind if k != "null"]
            if len(non_null) != 1:
                raise SchemaError("type with several non-null types", path, "use anyOf")
            if len(non_null) < len(kind):
                out["nullable"] = True
            kind = non_null[0]
        mapped = TYPES.get(kind) if isinstance(kind, str) else None
        if mapped is None:
            raise SchemaError(f"type {kind!r}", path)
        out["type"] = mapped
        return mapped

    def _any_of(self, branches: Any, path: str, out: dict[str, Any]) -> None:
        if not isinstance(branches, list) or not branches:
            raise SchemaError("anyOf", path, "expected a non-empty array")
        kept = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null" and len(b) == 1)]
        if len(kept) < len(branches):
            out["nullable"] = True
        converted = [self.convert(b, f"{path}/anyOf/{i}") for i, b in enumerate(kept)]
        if len(converted) == 1:
            for key, value in converted[0].items():
                out.setdefault(key, value)
        else:
            out["anyOf"] = converted

    def _object(self, schema: dict[str, Any], path: str, out: dict[str, Any]) -> None:
        properties = schema.get("properties") or {}
        if not isinstance(properties, dict):
            raise SchemaError("properties", path, "expected an object")
        if not properties:
            raise SchemaError("an object without properties (a free-form object)", path)
        out["type"] = "OBJECT"
        out["properties"] = {name: self.convert(sub, f"{path}/properties/{name}") for name, sub in properties.items()}
        out["propertyOrdering"] = list(properties)
        required = schema.get("required")
        if required:
            unknown = [name for name in required if name not in properties]
            if unknown:
                raise SchemaError("required", path, f"names undeclared properties {unknown}")
            out["required"] = list(required)

    def _ref(self, schema: dict[str, Any], ref: Any, path: str) -> dict[str, Any]:
        if ref in self._stack:
            raise SchemaError(f"recursive $ref {ref!r}", path)
        target = self._resolve(ref, path)
        self._stack.append(ref)
        try:
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            return self.convert({**target, **siblings}, path)
        finally:
            self._stack.pop()

    def _resolve(self, ref: Any, path: str) -> dict[str, Any]:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise SchemaError(f"$ref {ref!r}", path, "only local references (#/$defs/...) can be inlined")
        node: Any = self._root
        for token in ref[2:].split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or token not in node:
                raise SchemaError(f"$ref {ref!r}", path, "it points nowhere")
            node = node[token]
        if not isinstance(node, dict):
            raise SchemaError(f"$ref {ref!r}", path, "it does not point to a schema")
        return node
