// The billing page's script (plain browser JavaScript, no build step). It asks for an API key (finance or
// auditor) and a tenant, keeps the key in sessionStorage, and reads the billing API: usage this month and the
// month's draft invoice (lines per model, detail per agent and per day), refreshed every few seconds, and
// the last months' invoices. Amounts come as decimal USD strings and are shown as given (no float sums).
// Every value goes into the page through textContent, never as HTML.
(function () {
  'use strict';
  var KEY = 'forge.apiKey';
  var REFRESH_MS = Number(new URLSearchParams(location.search).get('refresh_ms')) || 5000;
  var timer = null;

  function text(id, value) { document.getElementById(id).textContent = value; }
  function status(msg, isError) {
    var el = document.getElementById('status');
    el.textContent = msg;
    el.className = isError ? 'error' : '';
  }
  function int(n) { return new Intl.NumberFormat('en-US').format(n); }
  function monthOf(d) { return d.toISOString().slice(0, 7); }
  function monthsBack(n) {
    var d = new Date();
    return monthOf(new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - n, 1)));
  }
  function rows(tableId, items, cells) {
    var body = document.querySelector('#' + tableId + ' tbody');
    body.replaceChildren();
    items.forEach(function (item) {
      var tr = document.createElement('tr');
      tr.dataset.key = String(item.key || item.id || item.month || '');
      cells(item).forEach(function (c, i) {
        var td = document.createElement('td');
        td.textContent = c;
        if (i > 0) td.className = 'num';
        tr.append(td);
      });
      body.append(tr);
    });
  }

  function get(path, key) {
    return fetch(path, { headers: { authorization: 'Bearer ' + key } }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error((body.error && body.error.message) || 'HTTP ' + r.status);
        return body;
      });
    });
  }

  function render(usage, inv, history) {
    text('executions', int(usage.executions));
    text('plan', 'plan ' + usage.plan_id + (usage.included === null ? '' : ', ' + int(usage.included) + ' included'));
    var tokenLines = inv.lines.filter(function (l) { return l.kind === 'tokens' || l.kind === 'byok_tokens'; });
    var input = 0, output = 0;
    tokenLines.forEach(function (l) { input += l.input_tokens; output += l.output_tokens; });
    text('tokens', int(input + output));
    text('tokens-split', int(input) + ' in, ' + int(output) + ' out');
    text('total-usd', inv.total_usd + ' USD');
    text('subtotal', 'subtotal ' + inv.subtotal_usd + ', credits ' + inv.credits_applied_usd);
    var cost = inv.by_agent.map(function (a) { return a.cost_usd; });
    text('cost-usd', sumUsd(cost) + ' USD');
    text('updated', 'updated ' + new Date().toISOString().slice(11, 19) + ' UTC');
    rows('by-model', tokenLines.map(function (l) { return { key: l.id, l: l }; }), function (x) {
      return [x.l.model + (x.l.kind === 'byok_tokens' ? ' (your key)' : ''), int(x.l.input_tokens), int(x.l.output_tokens), x.l.cost_usd || '0', x.l.amount_usd];
    });
    var detail = function (d) { return [d.key, int(d.executions), int(d.input_tokens + d.output_tokens), d.cost_usd, d.price_usd]; };
    rows('by-agent', inv.by_agent, detail);
    rows('by-day', inv.by_day, detail);
    rows('lines', inv.lines, function (l) { return [l.description, int(l.quantity), l.amount_usd]; });
    rows('invoices', history, function (h) { return [h.month, h.final ? 'final' : 'draft', h.total_usd]; });
  }

  // Adds decimal USD strings exactly (in micro-dollars as BigInt): no binary float sums on this page.
  function sumUsd(values) {
    var total = BigInt(0);
    values.forEach(function (v) {
      var neg = v.charAt(0) === '-';
      var parts = (neg ? v.slice(1) : v).split('.');
      var micros = BigInt(parts[0]) * BigInt(1000000) + BigInt(((parts[1] || '') + '000000').slice(0, 6));
      total += neg ? -micros : micros;
    });
    var abs = total < 0 ? -total : total;
    var frac = (abs % BigInt(1000000)).toString().padStart(6, '0').replace(/0+$/, '');
    return (total < 0 ? '-' : '') + (abs / BigInt(1000000)).toString() + (frac ? '.' + frac : '');
  }

  function load(key, tenant) {
    var t = encodeURIComponent(tenant);
    var base = '/v1/billing/tenants/' + t;
    var months = [monthsBack(0), monthsBack(1), monthsBack(2)];
    return Promise.all([
      get(base + '/usage', key),
      get(base + '/invoices/' + months[0], key),
      Promise.all(months.map(function (m) {
        return get(base + '/invoices/' + m, key).then(function (i) { return { month: m, final: i.final, total_usd: i.total_usd }; }, function () { return null; });
      })),
    ]).then(function (r) {
      render(r[0], r[1], r[2].filter(function (x) { return x !== null; }));
      document.getElementById('content').hidden = false;
      document.body.dataset.ready = '1';
      document.body.dataset.loads = String(Number(document.body.dataset.loads || '0') + 1);
      status('Live: refreshed every ' + (REFRESH_MS / 1000).toFixed(REFRESH_MS < 1000 ? 1 : 0) + ' s.', false);
    });
  }

  function start(key, tenant) {
    if (timer) clearInterval(timer);
    delete document.body.dataset.ready;
    load(key, tenant).then(function () {
      timer = setInterval(function () {
        load(key, tenant).catch(function (e) { status(e.message, true); });
      }, REFRESH_MS);
    }, function (e) {
      document.body.dataset.ready = 'error';
      status(e.message, true);
    });
  }

  var saved = sessionStorage.getItem(KEY);
  if (saved) document.getElementById('api-key').value = saved;
  document.getElementById('controls').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var key = document.getElementById('api-key').value.trim();
    var tenant = document.getElementById('tenant').value.trim();
    sessionStorage.setItem(KEY, key);
    start(key, tenant);
  });
})();
