// The reference agent shipped with healthcare-v1: rule-based, no LLM, no network. It reads one task (JSON in
// FORGE_TASK_FILE), writes log lines, and answers with one `FORGE_ANSWER {json}` line on stdout.
// It is deliberately imperfect, so the suite shows a known share: it codes negated findings ("denies chest
// pain"), keeps discontinued medications in a handoff, and reads a coverage end date as exclusive. On
// healthcare-v1 that fails 5 of 40 tasks: 35 pass (87.5%).
import { readFileSync } from 'node:fs';

// The task is in the file FORGE_TASK_FILE names (every executor), and on stdin (the local one).
const task = JSON.parse(readFileSync(process.env.FORGE_TASK_FILE, 'utf8'));
const { input } = task;
console.log(`reference agent: ${task.task_id} (${task.category})`);

const money = (s) => Math.round(Number(s) * 100); // cents, integers
const usd = (c) => c / 100;

const solvers = {
  claim_adjudication() {
    const { claim, plan } = input;
    let allowed = 0;
    const denied = [];
    for (const l of claim.lines) {
      if (!plan.covered_cpts.includes(l.cpt)) {
        denied.push(l.cpt);
        continue;
      }
      allowed += Math.min(money(l.billed_usd), money(plan.fee_schedule[l.cpt]) * l.units);
    }
    const ded = Math.min(money(plan.deductible_remaining_usd), allowed);
    const after = allowed - ded;
    const coins = Math.round((after * plan.coinsurance_pct) / 100);
    const decision = denied.length === claim.lines.length ? 'deny' : denied.length ? 'partial' : 'approve';
    return { claim_id: claim.claim_id, decision, allowed_usd: usd(allowed), plan_pays_usd: usd(after - coins), member_owes_usd: usd(ded + coins), denied_lines: denied };
  },
  prior_authorization() {
    const { request, policy } = input;
    const unmet = policy.criteria.filter((c) => {
      const v = request.documentation[c.field];
      return c.op === '>=' ? !(v >= c.value) : v !== c.value;
    }).map((c) => c.id);
    if (!request.icd10.some((d) => policy.requires_dx_any.includes(d))) unmet.push('DX');
    const decision = unmet.length ? 'denied' : 'approved';
    const rationale = unmet.length
      ? `Denied: the request for ${policy.name} does not meet criteria ${unmet.join(', ')} of the medical policy.`
      : `Approved: the request for ${policy.name} meets every criterion of the medical policy.`;
    return { decision, unmet_criteria: unmet, rationale };
  },
  denial_appeal() {
    const cures = { 'CO-197': 'auth_number', 'CO-50': 'medical_necessity_letter', 'CO-16': 'corrected_claim', 'CO-29': 'proof_of_timely_filing', 'CO-11': 'corrected_diagnosis' };
    const { denial, appeal_evidence: ev } = input;
    const overturn = Boolean(ev[cures[denial.carc]]);
    const letter = `Re claim ${denial.claim_id}: the ${denial.carc} denial (${denial.reason}) is ${overturn ? 'overturned and the claim will be reprocessed' : 'upheld because the evidence does not cure it'}.`;
    return { carc: denial.carc, overturn, next_action: overturn ? 'reprocess' : 'uphold', letter };
  },
  eligibility() {
    const { inquiry, member } = input;
    // Known gap: the end date is read as exclusive.
    const hit = member.coverage.find((c) => c.start <= inquiry.date_of_service && inquiry.date_of_service < c.end);
    const ok = Boolean(hit && hit.service_types.includes(inquiry.service_type));
    return { eligible: ok, plan: ok ? hit.plan : null, copay_usd: ok ? Number(hit.copay_usd) : 0 };
  },
  coding() {
    const note = input.note.toLowerCase();
    // Known gap: no negation handling.
    const icd10 = Object.entries(input.code_book.icd10).filter(([term]) => note.includes(term)).map(([, c]) => c);
    const cpt = Object.entries(input.code_book.cpt).filter(([term]) => note.includes(term)).map(([, c]) => c);
    return { icd10, cpt };
  },
  referral() {
    const spec = input.specialty_needed;
    const best = input.network.filter((p) => p.specialty === spec && p.in_network && p.accepting_new).sort((a, b) => a.distance_mi - b.distance_mi)[0];
    const urgent = input.urgent_terms.some((t) => input.reason.includes(t));
    return { needs_referral: input.patient.plan_type === 'HMO', provider_id: best ? best.provider_id : null, urgency: urgent ? 'urgent' : 'routine', note: `Please see this patient for ${input.reason} (${urgent ? 'urgent' : 'routine'}).` };
  },
  scheduling() {
    const { request, busy } = input;
    const t0 = Date.parse(request.earliest);
    const close = Date.parse(request.clinic_close);
    const dur = request.duration_min * 60_000;
    for (let t = t0; t + dur <= close; t += 15 * 60_000) {
      if (!busy.some((b) => Date.parse(b.start) < t + dur && t < Date.parse(b.end))) return { slot_start: new Date(t).toISOString().replace('.000Z', 'Z'), duration_min: request.duration_min };
    }
    return { slot_start: null, duration_min: request.duration_min };
  },
  note_summary() {
    // Known gap: discontinued medications are kept.
    return { allergies: input.allergies, active_meds: input.medications.map((m) => m.name), summary: `Follow-up visit; the patient is stable. Allergies: ${input.allergies.join(', ')}.` };
  },
};

const solve = solvers[task.category];
if (!solve) {
  console.error(`no solver for category ${task.category}`);
  process.exit(3);
}
process.stdout.write(`FORGE_ANSWER ${JSON.stringify(solve())}\n`);
