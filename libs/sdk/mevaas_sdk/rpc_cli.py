"""`mevaas api <group> <rpc>`: every RPC of every service, one command each, generated from the
protos' descriptors, so a new RPC is reachable the moment its stub is generated.

Each request field is an option (`--chain-id 31337`, `--include-zero`); an enum takes its short
name (`--method parametric`); a message or repeated message field takes JSON
(`--timeframe '{"start": "2026-01-01T00:00:00Z"}'`); `--request JSON` / `--request-file FILE`
give the whole request (options given as well override its fields). A missing idempotency key is
made up. The answer is printed as JSON (the protobuf JSON mapping; amounts in base units).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor

from mevaas_sdk.cli_support import JsonOption, fail, print_json, run_call
from mevaas_sdk.protojson import expand_enums

app = typer.Typer(
    help="Every RPC of every service, one command each (from the protos).", no_args_is_help=True
)
RESERVED = {"request", "request_file", "as_json"}


@dataclass(frozen=True)
class ApiGroup:
    """One proto service (or a part of it) as a command group."""

    package: str  # e.g. "mevaas.risk.v1.risk"
    service: str
    endpoint: str  # the service (endpoint name) that serves it
    help: str
    methods: tuple[str, ...] = ()  # only these; every method when empty

    def descriptor(self) -> Any:
        return importlib.import_module(f"{self.package}_pb2").DESCRIPTOR.services_by_name[self.service]

    def rpcs(self) -> list[MethodDescriptor]:
        methods: list[MethodDescriptor] = list(self.descriptor().methods)
        return [m for m in methods if not self.methods or m.name in self.methods]

    def stub(self, client: Any) -> Any:
        module = importlib.import_module(f"{self.package}_pb2_grpc")
        return getattr(module, f"{self.service}Stub")(client.channel(self.endpoint))


PROTECTION = ("SubmitProtectedTransaction", "GetProtectedTransaction", "ListProtectedTransactions")
API_GROUPS: dict[str, ApiGroup] = {
    "tenancy": ApiGroup(
        "mevaas.tenancy.v1.tenancy", "TenantService", "tenancy", "Tenants, users, keys, branding, audit."
    ),
    "auth": ApiGroup(
        "mevaas.tenancy.v1.tenancy", "AuthService", "tenancy", "API key exchange, who am I, portals."
    ),
    "signin": ApiGroup(
        "mevaas.tenancy.v1.tenancy",
        "SignInService",
        "tenancy",
        "People's sign-in: enrolment, sessions, OIDC.",
    ),
    "strategy": ApiGroup(
        "mevaas.strategy.v1.strategy", "StrategyService", "strategy", "Strategies, versions, backtests."
    ),
    # `protection` is the Protect side (protected transactions); this is leverage protection.
    "leverage": ApiGroup(
        "mevaas.strategy.v1.strategy",
        "LeverageProtectionService",
        "strategy",
        "Leverage protection: protected Aave positions and their alerts.",
    ),
    "risk": ApiGroup(
        "mevaas.risk.v1.risk", "RiskService", "risk", "Limits, exposure, VaR, kill switch, breaches."
    ),
    "execution": ApiGroup(
        "mevaas.execution.v1.execution",
        "ExecutionService",
        "execution",
        "Sessions, executions, wallets, treasury.",
    ),
    "protection": ApiGroup(
        "mevaas.execution.v1.execution",
        "ExecutionService",
        "execution",
        "Protected transactions.",
        PROTECTION,
    ),
    "analytics": ApiGroup(
        "mevaas.analytics.v1.analytics", "AnalyticsService", "analytics", "Opportunities, reports, invoices."
    ),
    "portfolio": ApiGroup(
        "mevaas.portfolio.v1.portfolio", "PortfolioService", "analytics", "Positions, performance, rebalance."
    ),
}


# Words the protos spell in mixed case that are one word on the command line.
WORDS = {"VaR": "Var"}


def kebab(name: str) -> str:
    """`GetVaR` -> `get-var`, `ListAuditRecords` -> `list-audit-records`."""
    for word, plain in WORDS.items():
        name = name.replace(word, plain)
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


@dataclass(frozen=True)
class OptionKind:
    """How one kind of field is typed on the command line and turned into the request document."""

    python_type: Any
    describe: Callable[[Any], str]
    to_document: Callable[[Any, Any], Any] = lambda value, field: value


def _json_value(value: Any, field: Any) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise fail(f"--{field.name.replace('_', '-')}: not valid JSON: {exc}") from None


def _enum_names(field: Any) -> str:
    prefix = field.enum_type.values[0].name.removesuffix("UNSPECIFIED")
    return ", ".join(v.name.removeprefix(prefix).lower() for v in field.enum_type.values[1:])


OPTION_KINDS: dict[int, OptionKind] = {
    FieldDescriptor.CPPTYPE_STRING: OptionKind(
        str, lambda f: "bytes, base64" if f.type == f.TYPE_BYTES else "string"
    ),
    FieldDescriptor.CPPTYPE_INT32: OptionKind(int, lambda f: "integer"),
    FieldDescriptor.CPPTYPE_INT64: OptionKind(int, lambda f: "integer"),
    FieldDescriptor.CPPTYPE_UINT32: OptionKind(int, lambda f: "integer >= 0"),
    FieldDescriptor.CPPTYPE_UINT64: OptionKind(int, lambda f: "integer >= 0"),
    FieldDescriptor.CPPTYPE_BOOL: OptionKind(bool, lambda f: "flag"),
    FieldDescriptor.CPPTYPE_DOUBLE: OptionKind(float, lambda f: "number"),
    FieldDescriptor.CPPTYPE_FLOAT: OptionKind(float, lambda f: "number"),
    FieldDescriptor.CPPTYPE_ENUM: OptionKind(str, lambda f: f"one of {_enum_names(f)}"),
    FieldDescriptor.CPPTYPE_MESSAGE: OptionKind(
        str, lambda f: f"JSON of {f.message_type.full_name}", _json_value
    ),
}


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _option(field: Any) -> inspect.Parameter:
    kind = OPTION_KINDS[field.cpp_type]
    is_message = field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE
    # A repeated message (or a map) is one JSON array (object); a repeated scalar is given repeatedly.
    many = _is_repeated(field) and not is_message
    python_type: Any = list[kind.python_type] | None if many else kind.python_type | None  # type: ignore[name-defined]
    what = kind.describe(field) + (" (repeatable)" if many else "")
    if is_message and _is_repeated(field):
        what = f"JSON {'object' if field.message_type.GetOptions().map_entry else 'array'} of " + (
            field.message_type.full_name
        )
    option = typer.Option(f"--{field.name.replace('_', '-')}", help=what, show_default=False)
    return inspect.Parameter(
        field.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[python_type, option]
    )


def _document(values: dict[str, Any], request: Any, base: dict[str, Any]) -> dict[str, Any]:
    fields = request.DESCRIPTOR.fields_by_name
    document = dict(base)
    for name, value in values.items():
        if value is None or value == []:
            continue
        field = fields[name]
        kind = OPTION_KINDS[field.cpp_type]
        document[name] = (
            [kind.to_document(v, field) for v in value]
            if isinstance(value, list)
            else kind.to_document(value, field)
        )
    if "idempotency_key" in fields and not document.get("idempotency_key"):
        document["idempotency_key"] = str(uuid.uuid4())
    return document


def _base_request(text: str | None, path: Path | None) -> dict[str, Any]:
    if text and path:
        raise fail("give --request or --request-file, not both")
    source = path.read_text() if path else text
    if not source:
        return {}
    try:
        data = json.loads(source)
    except ValueError as exc:
        raise fail(
            f"{'--request-file ' + str(path) if path else '--request'}: not valid JSON: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise fail("the request must be a JSON object")
    return data


def rpc_command(group: ApiGroup, method: MethodDescriptor) -> Callable[..., None]:
    from google.protobuf import symbol_database
    from google.protobuf.json_format import MessageToDict, ParseDict, ParseError

    request_class = symbol_database.Default().GetSymbol(method.input_type.full_name)
    fields = [f for f in method.input_type.fields if f.name not in RESERVED]

    def command(**values: Any) -> None:
        base = _base_request(values.pop("request"), values.pop("request_file"))
        values.pop("as_json")
        request = request_class()
        try:
            ParseDict(expand_enums(request.DESCRIPTOR, _document(values, request, base)), request)
        except ParseError as exc:
            raise fail(f"{method.name}: {exc}") from None
        if method.server_streaming:
            # One JSON object per line, as each message arrives, until the stream ends (or Ctrl-C).
            async def follow(client: Any) -> None:
                async for message in getattr(group.stub(client), method.name)(request):
                    print(json.dumps(MessageToDict(message, preserving_proto_field_name=True)), flush=True)

            run_call(follow)
            return
        response = run_call(lambda c: getattr(group.stub(c), method.name)(request))
        print_json(MessageToDict(response, preserving_proto_field_name=True))

    extra = [
        inspect.Parameter(
            "request",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[str | None, typer.Option("--request", help="The whole request as JSON.")],
        ),
        inspect.Parameter(
            "request_file",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                Path | None, typer.Option("--request-file", help="The request as a JSON file.", exists=True)
            ],
        ),
        # Output is JSON either way; --json also makes errors JSON (on stderr), as everywhere.
        inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOption),
    ]
    command.__signature__ = inspect.Signature([*map(_option, fields), *extra])  # type: ignore[attr-defined]
    command.__doc__ = f"{method.full_name} ({method.input_type.name} -> {method.output_type.name})."
    return command


def _build() -> None:
    for name, group in API_GROUPS.items():
        sub = typer.Typer(help=group.help, no_args_is_help=True)
        for method in group.rpcs():
            sub.command(kebab(method.name))(rpc_command(group, method))
        app.add_typer(sub, name=name)


_build()
