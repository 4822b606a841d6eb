// The burn page's script (plain browser JavaScript, no build step). It asks for a finance API key, keeps
// it in sessionStorage (gone when the tab closes), loads /v1/burn/data and draws it with chart.js.
// Every value goes into the page through textContent, never as HTML.
/* global Chart */
(function () {
  'use strict';
  var KEY = 'forge.apiKey';
  var charts = [];
  var COLOURS = { ok: '#2e7d32', soft: '#ef6c00', hard: '#c62828', total: '#1565c0' };
  var STATE_TEXT = { NORMAL: 'NORMAL', WARNING: 'WARNING', HARD_STOP: 'HARD STOP', EMERGENCY_STOP: 'EMERGENCY STOP' };

  function usd(v, digits) {
    var d = digits === undefined ? 2 : digits;
    return new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: d, maximumFractionDigits: d }).format(v);
  }
  function text(id, value) {
    document.getElementById(id).textContent = value;
  }
  function status(msg, isError) {
    var el = document.getElementById('status');
    el.textContent = msg;
    el.className = isError ? 'error' : '';
  }

  function render(data) {
    var states = document.getElementById('states');
    states.replaceChildren();
    data.states.forEach(function (s) {
      var card = document.createElement('div');
      card.className = 'state ' + (STATE_TEXT[s.state] ? s.state : 'NORMAL');
      card.dataset.scope = s.scope;
      card.dataset.state = s.state;
      var scope = document.createElement('div');
      scope.className = 'scope';
      scope.textContent = s.scope;
      var value = document.createElement('div');
      value.className = 'value';
      value.textContent = STATE_TEXT[s.state] || s.state;
      card.append(scope, value);
      states.append(card);
    });

    var total30 = data.daily.reduce(function (a, d) { return a + d.totalUsd; }, 0);
    var today = data.daily.length ? data.daily[data.daily.length - 1].totalUsd : 0;
    text('today-usd', usd(today));
    text('total-30d-usd', usd(total30));
    text('day-soft-usd', usd(data.bands.daySoftUsd));
    text('day-hard-usd', usd(data.bands.dayHardUsd));
    text('cost-per-operation', data.unit.costPerOperationUsd === null ? 'n/a' : usd(data.unit.costPerOperationUsd, 4));
    text('cost-per-success', data.unit.costPerSuccessUsd === null ? 'n/a' : usd(data.unit.costPerSuccessUsd, 4));
    text('operations', data.unit.operations + ' (' + data.unit.succeeded + ')');

    text('runway-days', data.runway.days === null ? 'no burn in 7 days' : data.runway.days.toFixed(1) + ' days');
    text('run-spend-usd', usd(data.runway.runSpendUsd));
    text('run-cap-usd', usd(data.bands.runCapUsd));
    text('remaining-usd', usd(data.runway.remainingUsd));
    text('avg-day-usd', usd(data.runway.avgDayUsd));

    text('stops-warning', String(data.stopConditions24h.warning));
    text('stops-hard', String(data.stopConditions24h.hardStop));
    text('stops-emergency', String(data.stopConditions24h.emergencyStop));

    var tbody = document.getElementById('recent-stops');
    tbody.replaceChildren();
    data.recentStops.forEach(function (r) {
      var tr = document.createElement('tr');
      [r.time, r.scope, r.previous, STATE_TEXT[r.state] || r.state, r.reason].forEach(function (v) {
        var td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      });
      tbody.append(tr);
    });
    if (data.recentStops.length === 0) {
      var tr = document.createElement('tr');
      var td = document.createElement('td');
      td.colSpan = 5;
      td.textContent = 'none in the last 30 days';
      tr.append(td);
      tbody.append(tr);
    }

    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    var days = data.daily.map(function (d) { return d.day; });
    var money = { ticks: { callback: function (v) { return usd(v, 0); } }, beginAtZero: true };
    charts.push(new Chart(document.getElementById('daily-chart'), {
      data: {
        labels: days,
        datasets: [
          { type: 'bar', label: 'daily total', data: data.daily.map(function (d) { return d.totalUsd; }), backgroundColor: COLOURS.total, order: 2 },
          { type: 'line', label: 'B_day_soft', data: days.map(function () { return data.bands.daySoftUsd; }), borderColor: COLOURS.soft, borderDash: [6, 6], pointRadius: 0, order: 1 },
          { type: 'line', label: 'B_day_hard', data: days.map(function () { return data.bands.dayHardUsd; }), borderColor: COLOURS.hard, borderDash: [6, 6], pointRadius: 0, order: 1 },
        ],
      },
      options: { animation: false, maintainAspectRatio: false, scales: { y: money } },
    }));
    // The components come with the data (the server's one list), each with its label and colour.
    charts.push(new Chart(document.getElementById('composition-chart'), {
      type: 'bar',
      data: {
        labels: data.composition.map(function (d) { return d.day; }),
        datasets: data.components.map(function (c) {
          return { label: c.label, data: data.composition.map(function (d) { return d[c.key]; }), backgroundColor: c.colour };
        }),
      },
      options: { animation: false, maintainAspectRatio: false, scales: { x: { stacked: true }, y: Object.assign({ stacked: true }, money) } },
    }));
    document.getElementById('content').hidden = false;
  }

  function load() {
    var key = sessionStorage.getItem(KEY);
    if (!key) {
      status('Enter a finance API key.', false);
      return;
    }
    var q = new URLSearchParams();
    var tenant = document.getElementById('tenant').value.trim();
    var run = document.getElementById('run').value.trim();
    if (tenant) q.set('tenant', tenant);
    if (run) q.set('run', run);
    status('Loading...', false);
    document.body.dataset.ready = '';
    fetch('/v1/burn/data' + (q.toString() ? '?' + q.toString() : ''), { headers: { authorization: 'Bearer ' + key } })
      .then(function (res) {
        return res.json().then(function (body) {
          if (!res.ok) throw new Error((body && body.error && body.error.message) || 'HTTP ' + res.status);
          return body;
        });
      })
      .then(function (data) {
        render(data);
        loadIncidents(key, data.tenant);
        status('Tenant ' + data.tenant + (data.run ? ', run ' + data.run : '') + ' as of ' + new Date(data.to).toISOString().replace('T', ' ').slice(0, 19) + ' UTC', false);
        document.body.dataset.ready = '1';
      })
      .catch(function (e) {
        // Never leave another answer's numbers on screen under an error.
        document.getElementById('content').hidden = true;
        status(e.message, true);
        document.body.dataset.ready = 'error';
      });
  }

  // The tenant's incidents (GET /v1/incidents): opened by an EMERGENCY_STOP, acknowledged, resolved with a
  // note. A key or server without them shows why instead; the burn figures above stand either way.
  function loadIncidents(key, tenant) {
    var body = document.getElementById('incidents');
    var note = document.getElementById('incidents-note');
    body.textContent = '';
    note.hidden = true;
    document.body.dataset.incidents = '';
    fetch('/v1/incidents?tenant_id=' + encodeURIComponent(tenant), { headers: { authorization: 'Bearer ' + key } })
      .then(function (res) {
        return res.json().then(function (b) {
          if (!res.ok) throw new Error((b && b.error && b.error.message) || 'HTTP ' + res.status);
          return b.incidents;
        });
      })
      .then(function (list) {
        list.forEach(function (i) {
          var tr = document.createElement('tr');
          tr.dataset.id = i.id;
          tr.dataset.status = i.status;
          [i.opened_at.replace('T', ' ').slice(0, 19), i.scope, i.status, i.reason, i.resolved ? i.resolved.note : ''].forEach(function (v) {
            var td = document.createElement('td');
            td.textContent = v;
            tr.appendChild(td);
          });
          body.appendChild(tr);
        });
        if (list.length === 0) {
          note.textContent = 'No incidents in the last 90 days.';
          note.hidden = false;
        }
        document.body.dataset.incidents = '1';
      })
      .catch(function (e) {
        note.textContent = 'Incidents unavailable: ' + e.message;
        note.hidden = false;
        document.body.dataset.incidents = 'error';
      });
  }

  document.getElementById('controls').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var key = document.getElementById('api-key').value.trim();
    if (key) sessionStorage.setItem(KEY, key);
    load();
  });
  if (sessionStorage.getItem(KEY)) {
    document.getElementById('api-key').value = sessionStorage.getItem(KEY);
    load();
  }
})();
