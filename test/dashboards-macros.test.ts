import { describe, expect, it } from 'vitest';
import { expandForEngine, expandMacros, expandPluginMacros, interpolateVariables } from '../dashboards/index.ts';

// The plugin's own test vectors (pkg/macros/macros_test.go): from 2014-11-12T11:45:26.371Z, to a year later.
const from = Date.parse('2014-11-12T11:45:26.371Z');
const to = Date.parse('2015-11-12T11:45:26.371Z');

describe('ClickHouse plugin macros', () => {
  it('time macros: seconds (truncated) and milliseconds', () => {
    expect(expandPluginMacros('a > $__fromTime AND b < $__toTime', { from, to })).toBe('a > toDateTime(1415792726) AND b < toDateTime(1447328726)');
    expect(expandPluginMacros('$__fromTime_ms / $__toTime_ms', { from, to })).toBe('fromUnixTimestamp64Milli(1415792726371) / fromUnixTimestamp64Milli(1447328726371)');
    expect(expandPluginMacros('WHERE $__timeFilter(t)', { from, to })).toBe('WHERE t >= toDateTime(1415792726) AND t <= toDateTime(1447328726)');
    expect(expandPluginMacros('WHERE $__timeFilter_ms( t )', { from, to })).toBe('WHERE t >= fromUnixTimestamp64Milli(1415792726371) AND t <= fromUnixTimestamp64Milli(1447328726371)');
    expect(expandPluginMacros('$__dateFilter(d)', { from, to })).toBe("d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')");
    expect(expandPluginMacros('$__dt(d, t)', { from, to })).toBe(
      "(d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')) AND (t >= toDateTime(1415792726) AND t <= toDateTime(1447328726))",
    );
    expect(expandPluginMacros('$__timeInterval(t)', { from, to, intervalMs: 20_000 })).toBe('toStartOfInterval(toDateTime(t), INTERVAL 20 second)');
    expect(expandPluginMacros('$__interval_s', { from, to, intervalMs: 500 })).toBe('1');
  });

  it('a macro without parentheses swallows the next parenthesised expression, as sqlutil does', () => {
    // The plugin reads "$__toTime AND x IN (1, 2)" as the macro with arguments "1, 2"; toTime ignores them.
    expect(expandPluginMacros('at <= $__toTime AND x IN (1, 2)', { from, to })).toBe('at <= toDateTime(1447328726)');
    // Followed by ")" first, it stands alone: the spelling every Forge query uses.
    expect(expandPluginMacros('(at <= ($__toTime) AND x IN (1, 2))', { from, to })).toBe('(at <= (toDateTime(1447328726)) AND x IN (1, 2))');
  });

  it('wrong argument counts are errors; names are whole words', () => {
    expect(() => expandPluginMacros('$__timeFilter(a, b)', { from, to })).toThrow(/expected 1 argument, received 2/);
    expect(() => expandPluginMacros('$__dt(a)', { from, to })).toThrow(/expected 2 arguments, received 1/);
    // Without parentheses the argument list is one empty string (Go's strings.Split("", ",")).
    expect(expandPluginMacros('$__timeFilter', { from, to })).toBe(' >= toDateTime(1415792726) AND  <= toDateTime(1447328726)');
    expect(expandPluginMacros('$__fromTimeX', { from, to })).toBe('$__fromTimeX');
  });
});

describe('Grafana template variables', () => {
  it('formats values as Grafana does; unknown variables stay', () => {
    const vars = { tenant: "ac'me", db: 'forge', runs: ['a', 'b'], run: { allValue: "'__all__'" } };
    expect(interpolateVariables('${tenant:singlequote}', vars)).toBe("'ac\\'me'");
    expect(interpolateVariables('${tenant:sqlstring}', vars)).toBe("'ac''me'");
    expect(interpolateVariables('${runs:singlequote}', vars)).toBe("'a','b'");
    expect(interpolateVariables('${runs:regex}', vars)).toBe('(a|b)');
    expect(interpolateVariables('$db.t [[db]] ${db:raw}', vars)).toBe('forge.t forge forge');
    // A custom all value goes in unformatted.
    expect(interpolateVariables('${run:singlequote} = ${run}', vars)).toBe("'__all__' = '__all__'");
    expect(interpolateVariables('$__timeFilter(x) $unknown', vars)).toBe('$__timeFilter(x) $unknown');
  });

  it('variables first, then macros', () => {
    expect(expandMacros('SELECT 1 FROM ${database:raw}.t WHERE $__timeFilter(ts)', { from, to, vars: { database: 'db1' } })).toBe(
      'SELECT 1 FROM db1.t WHERE ts >= toDateTime(1415792726) AND ts <= toDateTime(1447328726)',
    );
  });

  it('for the engine, bound variables become query parameters', () => {
    const r = expandForEngine('WHERE tenant_id = ${tenant:singlequote} AND $__timeFilter(t)', { from, to, bind: { tenant: "x' OR 1=1" } });
    expect(r.query).toBe('WHERE tenant_id = {v_tenant:String} AND t >= toDateTime(1415792726) AND t <= toDateTime(1447328726)');
    expect(r.params).toEqual({ v_tenant: "x' OR 1=1" });
    expect(() => expandForEngine('WHERE tenant_id = ${tenant}', { from, to, bind: { tenant: 'a' } })).toThrow(/singlequote/);
  });
});
