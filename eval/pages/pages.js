// The eval pages' script (plain browser JavaScript, no build step): the leaderboard (/eval) and the run view
// (/eval/run). The API key stays in sessionStorage (gone when the tab closes). Every value goes into the page
// through textContent, never as HTML.
(function () {
  'use strict';
  var KEY = 'forge.apiKey';
  var page = document.body.dataset.page;
  var params = new URLSearchParams(location.search);

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function td(text, cls) {
    return el('td', text, cls);
  }
  function status(msg, isError) {
    var s = document.getElementById('status');
    s.textContent = msg;
    s.className = isError ? 'error' : '';
    // For people the text; for tests a marker: 'loading', '1' (drawn) or 'error'.
    document.body.dataset.ready = isError ? 'error' : msg === 'Loading…' ? 'loading' : '1';
  }
  function usd(s) {
    return s === null || s === undefined ? '–' : '$' + Number(s).toFixed(4);
  }
  function pct(x) {
    return (x * 100).toFixed(1) + '%';
  }
  function secs(ms) {
    return ms === null || ms === undefined ? '–' : (ms / 1000).toFixed(2) + ' s';
  }
  function get(url, key) {
    var headers = key ? { authorization: 'Bearer ' + key } : {};
    return fetch(url, { headers: headers }).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error((body.error && body.error.code ? body.error.code + ': ' : '') + (body.error ? body.error.message : 'HTTP ' + r.status));
        return body;
      });
    });
  }

  var keyInput = document.getElementById('api-key');
  var tenantInput = document.getElementById('tenant');
  keyInput.value = sessionStorage.getItem(KEY) || '';
  if (params.get('tenant')) tenantInput.value = params.get('tenant');

  function leaderboard() {
    var suite = document.getElementById('suite').value.trim();
    var key = keyInput.value.trim();
    var tenant = tenantInput.value.trim();
    if (key) sessionStorage.setItem(KEY, key);
    var url = key
      ? '/v1/eval/leaderboards/' + encodeURIComponent(suite) + (tenant ? '?tenant_id=' + encodeURIComponent(tenant) : '')
      : '/v1/public/leaderboards/' + encodeURIComponent(suite);
    status('Loading…');
    get(url, key)
      .then(function (b) {
        var body = document.querySelector('#board tbody');
        body.replaceChildren();
        b.rows.forEach(function (r) {
          var tr = el('tr');
          tr.dataset.run = r.run_id;
          var runCell = td();
          if (r.tenant_id) {
            var a = el('a', r.run_id);
            a.href = '/eval/run?tenant=' + encodeURIComponent(r.tenant_id) + '&run=' + encodeURIComponent(r.run_id);
            runCell.append(a);
          } else runCell.textContent = r.run_id;
          tr.append(td(r.rank), td(r.agent_name), runCell, td(pct(r.pass_rate), 'num pass-rate'), td(r.passed + '/' + r.tasks_total, 'num'), td(r.mean_score.toFixed(3), 'num'),
            td(usd(r.cost_per_success_usd), 'num cost-per-success'), td(usd(r.cost_per_task_usd), 'num'), td(usd(r.total_cost_usd), 'num'), td(secs(r.mean_duration_ms), 'num'), td(r.status, r.status === 'finished' ? 'passed' : 'failed'));
          body.append(tr);
        });
        status(b.rows.length + ' run' + (b.rows.length === 1 ? '' : 's') + ' on ' + (key ? 'your' : 'the public') + ' board of ' + b.suite + '.');
      })
      .catch(function (e) {
        status(e.message, true);
      });
  }

  function checksTable(checks) {
    var t = el('table');
    t.className = 'checks';
    var head = el('tr');
    ['Check', 'Weight', 'Score', 'Result', 'Detail'].forEach(function (h) {
      head.append(el('th', h));
    });
    t.append(head);
    checks.forEach(function (c) {
      var tr = el('tr');
      tr.append(td(c.id + (c.critical ? ' (critical)' : '')), td(c.weight, 'num'), td(c.skipped ? '–' : c.score.toFixed(3), 'num'), td(c.skipped ? 'skipped' : c.passed ? 'pass' : 'fail', c.skipped ? 'not_started' : c.passed ? 'passed' : 'failed'), td(c.detail));
      t.append(tr);
    });
    return t;
  }

  function runView() {
    var key = keyInput.value.trim();
    var tenant = tenantInput.value.trim();
    var run = document.getElementById('run').value.trim();
    if (!key || !run) return status('Enter an API key and a run.', true);
    sessionStorage.setItem(KEY, key);
    status('Loading…');
    get('/v1/eval/runs/' + encodeURIComponent(run) + (tenant ? '?tenant_id=' + encodeURIComponent(tenant) : ''), key)
      .then(function (b) {
        var r = b.run;
        var dl = document.getElementById('summary');
        dl.replaceChildren();
        var passed = b.tasks.filter(function (t) {
          return t.passed;
        }).length;
        [['Suite', r.suite + ' v' + r.suite_version], ['Agent', r.agent_name + ' (' + r.agent_id.slice(0, 12) + ')'], ['Executor', r.executor], ['Status', r.status + (r.reason ? ': ' + r.reason : '')],
          ['Passed', passed + '/' + r.tasks_total], ['Started', r.started_at], ['Finished', r.finished_at || '–']].forEach(function (p) {
          dl.append(el('dt', p[0]), el('dd', p[1]));
        });
        var body = document.querySelector('#tasks tbody');
        body.replaceChildren();
        b.tasks.forEach(function (t) {
          var tr = el('tr');
          tr.dataset.task = t.task_id;
          var detail = el('details');
          detail.append(el('summary', t.error ? 'error: ' + t.error.slice(0, 80) : 'rubric, cost, logs'));
          detail.append(el('h4', 'Rubric'), checksTable(t.checks));
          var comps = el('table');
          comps.className = 'components';
          Object.keys(t.cost_components_usd).forEach(function (k) {
            var row = el('tr');
            row.append(td(k), td(usd(t.cost_components_usd[k]), 'num'));
            comps.append(row);
          });
          detail.append(el('h4', 'Cost components'), comps);
          if (t.error) detail.append(el('h4', 'Error'), el('pre', t.error, 'error'));
          detail.append(el('h4', 'Logs'), el('pre', t.logs || '(none)', 'logs'));
          if (t.answer !== null) detail.append(el('h4', 'Answer'), el('pre', JSON.stringify(t.answer, null, 2), 'answer'));
          var dcell = td();
          dcell.append(detail);
          tr.append(td(t.task_id), td(t.status, 'task-status ' + t.status), td(t.score.toFixed(3), 'num'), td(usd(t.cost_total_usd), 'num'), td(secs(t.duration_ms), 'num'), dcell);
          body.append(tr);
        });
        document.getElementById('content').hidden = false;
        status(b.tasks.length + ' tasks.');
      })
      .catch(function (e) {
        status(e.message, true);
      });
  }

  var go = page === 'run' ? runView : leaderboard;
  if (page === 'run' && params.get('run')) document.getElementById('run').value = params.get('run');
  if (page === 'leaderboard' && params.get('suite')) document.getElementById('suite').value = params.get('suite');
  document.getElementById('controls').addEventListener('submit', function (ev) {
    ev.preventDefault();
    go();
  });
  if (page === 'leaderboard' || (keyInput.value && document.getElementById('run').value)) go();
})();
