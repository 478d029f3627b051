-- Everything a pre-trade decision reads, in one round trip: take the tenant's risk-state lock
-- (unless the caller serialises otherwise), the stored decision of a redelivered opportunity, the
-- limits, tenant status and plan, the kill switches, and the open reservations and today's PnL
-- grouped by strategy and token. SECURITY INVOKER (the default): row-level security still applies
-- to every read, exactly as for the statements it replaces.
CREATE FUNCTION risk.decision_context(
    p_tenant_id       text,
    p_strategy_id     text,
    p_opportunity_id  text,
    p_platform_tenant text,
    p_today           date,
    p_lock            boolean
) RETURNS TABLE (
    previous        bytea,
    tenant_limits   bytea,
    strategy_limits bytea,
    tenant_status   text,
    plan            bytea,
    tenant_kill     boolean,
    strategy_kill   boolean,
    platform_kill   boolean,
    aggregates      jsonb
) LANGUAGE plpgsql AS $$
BEGIN
    IF p_lock THEN
        INSERT INTO risk.risk_state AS s (tenant_id) VALUES (p_tenant_id)
            ON CONFLICT (tenant_id) DO UPDATE SET decisions = s.decisions;
    END IF;
    previous := (SELECT d.payload FROM risk.decisions d
                  WHERE d.tenant_id = p_tenant_id AND d.opportunity_id = p_opportunity_id);
    IF previous IS NOT NULL THEN
        RETURN NEXT;
        RETURN;
    END IF;
    tenant_limits := (SELECT l.limits FROM risk.limits l
                       WHERE l.tenant_id = p_tenant_id AND l.strategy_id = '');
    IF p_strategy_id <> '' THEN
        strategy_limits := (SELECT l.limits FROM risk.limits l
                             WHERE l.tenant_id = p_tenant_id AND l.strategy_id = p_strategy_id);
        strategy_kill := coalesce((SELECT k.engaged FROM risk.kill_switches k
                                    WHERE k.tenant_id = p_tenant_id AND k.strategy_id = p_strategy_id), false);
    ELSE
        strategy_kill := false;
    END IF;
    SELECT t.status, t.plan INTO tenant_status, plan FROM risk.tenants t WHERE t.tenant_id = p_tenant_id;
    tenant_kill := coalesce((SELECT k.engaged FROM risk.kill_switches k
                              WHERE k.tenant_id = p_tenant_id AND k.strategy_id = ''), false);
    platform_kill := coalesce((SELECT k.engaged FROM risk.kill_switches k
                                WHERE k.tenant_id = p_platform_tenant AND k.strategy_id = ''), false);
    -- Amounts as text: numeric(78,0) exceeds what JSON consumers read exactly as numbers.
    aggregates := coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'kind', a.kind, 'strategy_id', a.strategy_id, 'chain_id', a.chain_id,
                   'token', a.token, 'n', a.n, 'amount', a.amount::text))
          FROM (
            SELECT 'reserved' AS kind, r.strategy_id, r.chain_id, r.token, count(*) AS n, sum(r.amount) AS amount
              FROM risk.reservations r
             WHERE r.tenant_id = p_tenant_id AND r.released_at IS NULL AND r.expires_at > now()
             GROUP BY r.strategy_id, r.chain_id, r.token
            UNION ALL
            SELECT 'pnl', e.strategy_id, e.chain_id, e.token, count(*), sum(e.amount)
              FROM risk.pnl_entries e
             WHERE e.tenant_id = p_tenant_id AND e.day = p_today
             GROUP BY e.strategy_id, e.chain_id, e.token
          ) a), '[]'::jsonb);
    RETURN NEXT;
END
$$;
