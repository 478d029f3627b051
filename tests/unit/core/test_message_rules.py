from mevaas.strategy.v1 import strategy_pb2
from mevaas_core.message_rules import BIGINT_MAX, MAX_ID_CHARS, message_violations


def test_an_ordinary_request_passes() -> None:
    assert message_violations(strategy_pb2.GetStrategyRequest(strategy_id="3f1c")) == []


def test_nul_and_overlong_ids_are_refused_naming_the_field() -> None:
    found = message_violations(strategy_pb2.GetStrategyRequest(strategy_id="a\x00" * MAX_ID_CHARS))
    assert {v.field for v in found} == {"strategy_id"}
    assert len(found) == 2


def test_integers_beyond_bigint_are_refused() -> None:
    descriptor = strategy_pb2.DESCRIPTOR
    for message in descriptor.message_types_by_name.values():
        for field in message.fields:
            if field.type == field.TYPE_UINT64 and not field.is_repeated:
                cls = getattr(strategy_pb2, message.name)
                request = cls(**{field.name: BIGINT_MAX + 1})
                assert [v.field for v in message_violations(request)] == [field.name]
                assert message_violations(cls(**{field.name: BIGINT_MAX})) == []
                return
    raise AssertionError("no uint64 field in strategy.v1 to test with")


def test_invalid_timestamps_are_refused() -> None:
    from mevaas.risk.v1 import risk_pb2

    request = risk_pb2.ListBreachesRequest()
    request.time_range.start.seconds = 1
    request.time_range.start.nanos = -1
    request.time_range.end.seconds = 2**62
    violations = message_violations(request)
    assert [v.field for v in violations] == ["time_range.start", "time_range.end"]
    request.time_range.start.nanos = 5
    request.time_range.end.seconds = 1_700_000_000
    assert message_violations(request) == []


def test_an_audit_target_never_holds_a_nul() -> None:
    from mevaas_core.audit import target_of

    assert target_of(strategy_pb2.GetStrategyRequest(strategy_id="a\x00b")) == "strategies/a\\x00b"


def test_the_fast_check_agrees_with_the_full_walk_on_random_messages() -> None:
    """`message_violations` answers from a quick yes/no walk and names fields only for a message
    that breaks a rule: both must judge every message alike."""
    import random

    from mevaas.events.v1 import events_pb2
    from mevaas_core import message_rules
    from mevaas_core.errors import FieldViolation
    from tests.integration.security.fuzzing import fill

    rng = random.Random(7)
    judged = {True: 0, False: 0}
    for _ in range(400):
        for cls in (
            events_pb2.MarketUpdate,
            events_pb2.Opportunity,
            events_pb2.AuditRecord,
            strategy_pb2.CreateStrategyRequest,
        ):
            message = cls()
            fill(message, cls.DESCRIPTOR, rng)
            full: list[FieldViolation] = []
            message_rules._walk(message, "", full, 0)
            fast = message_rules._acceptable(message, 0)
            assert fast == (full == []), (cls.__name__, full)
            judged[fast] += 1
    assert judged[True] > 50 and judged[False] > 50  # both verdicts were exercised
