#!/usr/bin/env python3
"""Generates config/eval/healthcare-v1.yaml: 40 synthetic healthcare tasks (20 payer, 20 provider) with inputs,
expected outputs (computed here from the inputs, so they are right by construction) and rubrics.
All people, ids, plans and code books are synthetic. Run: python3 scripts/eval-healthcare-suite.py"""
import json, random
from decimal import Decimal, ROUND_HALF_UP

R = random.Random(18)
cents = lambda d: float(Decimal(d).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP))
tasks = []

def task(tid, domain, category, title, prompt, inp, expected, rubric, fee='0.10'):
    tasks.append({'id': tid, 'domain': domain, 'category': category, 'title': title, 'prompt': prompt,
                  'evaluation_fee_usd': fee, 'input': inp, 'expected': expected, 'rubric': rubric})

def mid(): return f"M{R.randint(100000, 999999)}"

# ---------------------------------------------------------------- payer: claim adjudication (5)
FEES = {'99213': '92.00', '99214': '131.00', '80053': '14.50', '85025': '10.75', '71046': '38.20', '93000': '17.40', '97110': '31.10'}
for i in range(5):
    cpts = R.sample(sorted(FEES), 3)
    covered = [c for c in cpts] if i % 2 == 0 else cpts[:2]
    lines = [{'cpt': c, 'units': R.choice([1, 1, 2]), 'billed_usd': f"{R.randint(40, 260)}.00"} for c in cpts]
    ded = f"{R.choice([0, 50, 120, 400])}.00"; coins = R.choice([10, 20, 30])
    allowed = Decimal(0); denied = []
    for l in lines:
        if l['cpt'] not in covered: denied.append(l['cpt']); continue
        allowed += min(Decimal(l['billed_usd']), Decimal(FEES[l['cpt']]) * l['units'])
    d = min(Decimal(ded), allowed); after = allowed - d
    co = (after * coins / 100).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)
    decision = 'deny' if len(denied) == len(lines) else 'partial' if denied else 'approve'
    cid = f"CLM-{R.randint(10000, 99999)}"
    task(f"payer-{i+1:02d}-claim-adjudication", 'payer', 'claim_adjudication', 'Adjudicate a professional claim against the plan fee schedule',
         'Adjudicate the claim: deny lines whose CPT is not covered; allowed per line = min(billed, fee x units); apply the remaining deductible, then coinsurance. Answer JSON: claim_id, decision (approve|partial|deny), allowed_usd, plan_pays_usd, member_owes_usd, denied_lines (CPT codes).',
         {'claim': {'claim_id': cid, 'member_id': mid(), 'lines': lines}, 'plan': {'fee_schedule': {c: FEES[c] for c in cpts}, 'covered_cpts': covered, 'deductible_remaining_usd': ded, 'coinsurance_pct': coins}},
         {'claim_id': cid, 'decision': decision, 'allowed_usd': cents(allowed), 'plan_pays_usd': cents(after - co), 'member_owes_usd': cents(d + co), 'denied_lines': denied},
         [{'kind': 'schema', 'schema': {'type': 'object', 'required': ['claim_id', 'decision', 'allowed_usd', 'plan_pays_usd', 'member_owes_usd', 'denied_lines'], 'properties': {'decision': {'enum': ['approve', 'partial', 'deny']}, 'allowed_usd': {'type': 'number'}, 'denied_lines': {'type': 'array', 'items': {'type': 'string'}}}}},
          {'kind': 'equals', 'path': 'claim_id'}, {'kind': 'equals', 'path': 'decision', 'weight': 2, 'critical': True},
          {'kind': 'number', 'path': 'allowed_usd', 'tolerance': 0.01}, {'kind': 'number', 'path': 'plan_pays_usd', 'tolerance': 0.01, 'weight': 2},
          {'kind': 'number', 'path': 'member_owes_usd', 'tolerance': 0.01, 'weight': 2}, {'kind': 'codes', 'path': 'denied_lines'}])

# ---------------------------------------------------------------- payer: prior authorization (5)
PA = [('72148', 'MRI lumbar spine', ['M54.5', 'M51.16'], [('conservative_therapy_weeks', '>=', 6), ('red_flags_documented', '==', False)]),
      ('27447', 'Total knee arthroplasty', ['M17.11', 'M17.12'], [('kellgren_lawrence_grade', '>=', 3), ('failed_injections', '>=', 1)]),
      ('95810', 'Polysomnography', ['G47.33'], [('epworth_score', '>=', 10), ('home_test_inconclusive', '==', True)]),
      ('J0135', 'Adalimumab', ['L40.0', 'M05.79'], [('tb_screen_negative', '==', True), ('failed_dmards', '>=', 1)]),
      ('43775', 'Sleeve gastrectomy', ['E66.01'], [('bmi', '>=', 40), ('supervised_diet_months', '>=', 6)])]
for i, (cpt, name, dx, crit) in enumerate(PA):
    docs = {}; unmet = []
    for j, (f, op, v) in enumerate(crit):
        ok = i % 2 == 0 or j == 1
        if op == '>=': docs[f] = v + R.randint(0, 4) if ok else v - R.randint(1, 2)
        else: docs[f] = v if ok else (not v)
        if not ok: unmet.append(f"C{j+1}")
    icd = [dx[0]] if i != 3 else ['Z00.00']
    dx_ok = any(c in dx for c in icd)
    if not dx_ok: unmet.append('DX')
    decision = 'approved' if not unmet else 'denied'
    task(f"payer-{i+6:02d}-prior-authorization", 'payer', 'prior_authorization', f'Prior authorization review: {name}',
         'Review the prior-authorization request against the medical policy. Each criterion C1..Cn compares a documentation field; the diagnosis must be one of the policy\'s (else criterion DX is unmet). Answer JSON: decision (approved|denied), unmet_criteria (ids), rationale (2-4 sentences for the provider).',
         {'request': {'member_id': mid(), 'cpt': cpt, 'icd10': icd, 'documentation': docs}, 'policy': {'cpt': cpt, 'name': name, 'requires_dx_any': dx, 'criteria': [{'id': f"C{j+1}", 'field': f, 'op': op, 'value': v} for j, (f, op, v) in enumerate(crit)]}},
         {'decision': decision, 'unmet_criteria': unmet, 'rationale': f"{'Approved' if not unmet else 'Denied'}: " + ('all policy criteria are met.' if not unmet else f"criteria {', '.join(unmet)} of the {name} policy are not met.")},
         [{'kind': 'fields', 'paths': ['decision', 'unmet_criteria', 'rationale']}, {'kind': 'equals', 'path': 'decision', 'weight': 3, 'critical': True}, {'kind': 'codes', 'path': 'unmet_criteria', 'weight': 2},
          {'kind': 'judge', 'path': 'rationale', 'criterion': 'The rationale states the decision, names every unmet criterion (or says all are met) in terms a provider understands, and invents no clinical facts absent from the request.'}])

# ---------------------------------------------------------------- payer: denial appeals (5)
CARC = {'CO-197': ('precertification absent', 'auth_number'), 'CO-50': ('not medically necessary', 'medical_necessity_letter'),
        'CO-16': ('claim lacks information', 'corrected_claim'), 'CO-29': ('timely filing limit expired', 'proof_of_timely_filing'),
        'CO-11': ('diagnosis inconsistent with procedure', 'corrected_diagnosis')}
for i, (carc, (why, needed)) in enumerate(CARC.items()):
    present = i in (0, 1, 3)
    ev = {k: False for _, k in CARC.values()}
    ev[needed] = present
    if needed == 'auth_number': ev[needed] = f"PA-{R.randint(100000, 999999)}" if present else None
    task(f"payer-{i+11:02d}-denial-appeal", 'payer', 'denial_appeal', f'Appeal review of a {carc} denial',
         'Decide the appeal: overturn when the evidence cures the denial reason (CO-197 an authorization number, CO-50 a medical-necessity letter, CO-16 a corrected claim, CO-29 proof of timely filing, CO-11 a corrected diagnosis). Answer JSON: carc, overturn (boolean), next_action (reprocess|uphold), letter (a short decision letter to the provider).',
         {'denial': {'claim_id': f"CLM-{R.randint(10000, 99999)}", 'carc': carc, 'reason': why, 'billed_usd': f"{R.randint(200, 4000)}.00"}, 'appeal_evidence': ev},
         {'carc': carc, 'overturn': present, 'next_action': 'reprocess' if present else 'uphold', 'letter': f"The {carc} denial ({why}) is {'overturned; the claim will be reprocessed' if present else 'upheld; the evidence does not cure it'}."},
         [{'kind': 'equals', 'path': 'carc'}, {'kind': 'equals', 'path': 'overturn', 'weight': 3, 'critical': True}, {'kind': 'equals', 'path': 'next_action', 'weight': 2},
          {'kind': 'judge', 'path': 'letter', 'criterion': 'The letter names the denial code and reason, states the outcome of the appeal and what happens next, and is courteous and free of protected health information beyond the claim id.'}])

# ---------------------------------------------------------------- payer: eligibility (5)
for i in range(5):
    year = 2026
    cov = [{'plan': 'HMO Silver', 'start': f'{year}-01-01', 'end': f'{year}-06-30', 'service_types': ['office', 'lab', 'imaging'], 'copay_usd': '25.00'},
           {'plan': 'PPO Gold', 'start': f'{year}-07-01', 'end': f'{year}-12-31', 'service_types': ['office', 'lab', 'therapy'], 'copay_usd': '15.00'}]
    dos, st = [(f'{year}-03-14', 'imaging'), (f'{year}-06-30', 'lab'), (f'{year}-08-02', 'imaging'), (f'{year}-11-20', 'therapy'), (f'{year - 1}-12-30', 'office')][i]
    hit = next((c for c in cov if c['start'] <= dos <= c['end']), None)
    ok = bool(hit and st in hit['service_types'])
    task(f"payer-{i+16:02d}-eligibility", 'payer', 'eligibility', 'Eligibility and benefits check (270/271 style)',
         'Is the member covered for the service type on the date of service (coverage periods are inclusive of both dates)? Answer JSON: eligible (boolean), plan (the covering plan name or null), copay_usd (0 when not eligible).',
         {'inquiry': {'member_id': mid(), 'date_of_service': dos, 'service_type': st}, 'member': {'coverage': cov}},
         {'eligible': ok, 'plan': hit['plan'] if ok else None, 'copay_usd': float(hit['copay_usd']) if ok else 0},
         [{'kind': 'schema', 'schema': {'type': 'object', 'required': ['eligible', 'plan', 'copay_usd'], 'properties': {'eligible': {'type': 'boolean'}, 'plan': {'type': ['string', 'null']}, 'copay_usd': {'type': 'number', 'minimum': 0}}}},
          {'kind': 'equals', 'path': 'eligible', 'weight': 3, 'critical': True}, {'kind': 'equals', 'path': 'plan'}, {'kind': 'number', 'path': 'copay_usd', 'tolerance': 0.01}])

# ---------------------------------------------------------------- provider: coding (5)
BOOK = {'type 2 diabetes': 'E11.9', 'essential hypertension': 'I10', 'hyperlipidemia': 'E78.5', 'chest pain': 'R07.9', 'asthma': 'J45.909',
        'major depressive disorder': 'F32.9', 'low back pain': 'M54.50', 'gastroesophageal reflux': 'K21.9', 'obesity': 'E66.9', 'migraine': 'G43.909'}
PROC = {'established patient visit, moderate': '99214', 'established patient visit, low': '99213', 'electrocardiogram': '93000', 'comprehensive metabolic panel': '80053', 'spirometry': '94010'}
for i in range(5):
    dxs = R.sample(sorted(BOOK), 3); neg = R.choice(sorted(set(BOOK) - set(dxs))) if i in (1, 3) else None
    procs = R.sample(sorted(PROC), 2)
    note = f"Patient seen today. Assessment: {', '.join(dxs)}." + (f" Patient denies {neg}." if neg else '') + f" Performed: {'; '.join(procs)}. Plan: follow up in 3 months."
    task(f"provider-{i+1:02d}-coding", 'provider', 'coding', 'Assign ICD-10-CM and CPT codes from a visit note',
         'Code the visit: ICD-10-CM for each assessed condition (not for negated or denied findings) and CPT for each performed service, using the code book given. Answer JSON: icd10 (codes), cpt (codes).',
         {'note': note, 'code_book': {'icd10': BOOK, 'cpt': PROC}},
         {'icd10': [BOOK[d] for d in dxs], 'cpt': [PROC[p] for p in procs]},
         [{'kind': 'codes', 'path': 'icd10', 'weight': 2, 'min_f1': 1, 'critical': True}, {'kind': 'codes', 'path': 'cpt', 'weight': 1}])

# ---------------------------------------------------------------- provider: referrals (5)
SPECS = ['cardiology', 'dermatology', 'orthopedics', 'neurology', 'gastroenterology']
for i, spec in enumerate(SPECS):
    plan = 'HMO' if i % 2 == 0 else 'PPO'
    net = [{'provider_id': f"P{i}{k}", 'specialty': R.choice([spec, spec, 'internal medicine']), 'in_network': R.random() > 0.3, 'accepting_new': R.random() > 0.25, 'distance_mi': round(R.uniform(1, 30), 1)} for k in range(6)]
    net.append({'provider_id': f"P{i}9", 'specialty': spec, 'in_network': True, 'accepting_new': True, 'distance_mi': 33.0})
    best = min((p for p in net if p['specialty'] == spec and p['in_network'] and p['accepting_new']), key=lambda p: p['distance_mi'])
    reason = ['exertional chest pressure with syncope', 'changing pigmented lesion', 'chronic knee pain', 'new focal weakness', 'intermittent heartburn'][i]
    urgent = ['syncope', 'focal weakness', 'changing pigmented lesion']
    task(f"provider-{i+6:02d}-referral", 'provider', 'referral', f'Route a {spec} referral',
         'Route the referral: HMO plans need a referral authorization, PPO plans do not; pick the nearest in-network provider of the specialty who accepts new patients; urgency is urgent when the reason mentions any urgent term. Answer JSON: needs_referral (boolean), provider_id, urgency (routine|urgent), note (one sentence to the specialist).',
         {'patient': {'age': R.randint(25, 80), 'plan_type': plan}, 'reason': reason, 'specialty_needed': spec, 'urgent_terms': urgent, 'network': net},
         {'needs_referral': plan == 'HMO', 'provider_id': best['provider_id'], 'urgency': 'urgent' if any(t in reason for t in urgent) else 'routine', 'note': f"Referral to {spec} for {reason}."},
         [{'kind': 'equals', 'path': 'provider_id', 'weight': 3, 'critical': True}, {'kind': 'equals', 'path': 'needs_referral', 'weight': 2}, {'kind': 'equals', 'path': 'urgency', 'weight': 2},
          {'kind': 'judge', 'path': 'note', 'criterion': 'The note states the reason for referral and the urgency in one or two professional sentences.'}])

# ---------------------------------------------------------------- provider: scheduling (5)
for i in range(5):
    day = f"2026-12-{7 + i:02d}"
    busy = sorted({(h, m) for h, m in [(R.randint(8, 15), R.choice([0, 15, 30, 45])) for _ in range(6)]})
    busy_iv = [{'start': f"{day}T{h:02d}:{m:02d}:00Z", 'end': f"{day}T{h + (1 if m >= 30 else 0):02d}:{(m + 30) % 60:02d}:00Z"} for h, m in busy]
    dur = R.choice([15, 30, 45, 60]); earliest = f"{day}T{R.choice([8, 9, 10]):02d}:00:00Z"
    def mins(s): return int(s[11:13]) * 60 + int(s[14:16])
    t = mins(earliest); end_of_day = 17 * 60
    while t + dur <= end_of_day and any(mins(b['start']) < t + dur and t < mins(b['end']) for b in busy_iv): t += 15
    slot = f"{day}T{t // 60:02d}:{t % 60:02d}:00Z" if t + dur <= end_of_day else None
    task(f"provider-{i+11:02d}-scheduling", 'provider', 'scheduling', 'Book the earliest open appointment slot',
         'Find the earliest start, on the 15-minute grid at or after `earliest`, where an appointment of duration_min fits before clinic close without overlapping a busy interval (intervals are half-open). Answer JSON: slot_start (ISO 8601 UTC, or null when none), duration_min.',
         {'request': {'patient_id': mid(), 'duration_min': dur, 'earliest': earliest, 'clinic_close': f"{day}T17:00:00Z"}, 'busy': busy_iv},
         {'slot_start': slot, 'duration_min': dur},
         [{'kind': 'equals', 'path': 'slot_start', 'weight': 3, 'critical': True}, {'kind': 'equals', 'path': 'duration_min'}])

# ---------------------------------------------------------------- provider: clinical note summary (5)
MEDS = ['metformin 500 mg BID', 'lisinopril 10 mg daily', 'atorvastatin 20 mg nightly', 'albuterol inhaler PRN', 'omeprazole 20 mg daily', 'sertraline 50 mg daily']
ALL = ['penicillin', 'sulfa drugs', 'latex', 'peanuts', 'codeine']
for i in range(5):
    meds = [{'name': m, 'status': 'active'} for m in R.sample(MEDS, 3)]
    if i in (2, 4): meds.append({'name': R.choice([m for m in MEDS if m not in [x['name'] for x in meds]]), 'status': 'discontinued'})
    alls = R.sample(ALL, R.choice([1, 2]))
    task(f"provider-{i+16:02d}-note-summary", 'provider', 'note_summary', 'Summarize a clinical note for a handoff',
         'Prepare a handoff: list the allergies and the active medications (not discontinued ones) exactly as named, and write a 2-3 sentence summary. Answer JSON: allergies, active_meds, summary.',
         {'note': f"{R.randint(30, 85)}-year-old seen for follow-up. Stable overall. Allergies: {', '.join(alls)}.", 'medications': meds, 'allergies': alls, 'vitals': {'bp': f"{R.randint(110, 150)}/{R.randint(70, 95)}", 'hr': R.randint(60, 95)}},
         {'allergies': alls, 'active_meds': [m['name'] for m in meds if m['status'] == 'active'], 'summary': 'Stable follow-up visit; allergies and active medications reviewed.'},
         [{'kind': 'codes', 'path': 'allergies', 'weight': 2, 'min_f1': 1, 'critical': True}, {'kind': 'codes', 'path': 'active_meds', 'weight': 2, 'min_f1': 1, 'critical': True},
          {'kind': 'judge', 'path': 'summary', 'criterion': 'The summary is 2-3 sentences, mentions the reason for the visit and the patient\'s status, and contradicts nothing in the note.'}])

assert len(tasks) == 40 and sum(t['domain'] == 'payer' for t in tasks) == 20
header = """# healthcare-v1: 40 scored agent-evaluation tasks on healthcare payer (20) and provider (20) workflows.
# ALL DATA IS SYNTHETIC: no real patients, members, providers or claims. Generated by
# scripts/eval-healthcare-suite.py (expected outputs are computed from the inputs there); edit that, not this.
# Each task: the prompt and input an agent receives, the expected answer, and a rubric of checks (eval/rubric.ts):
#   schema (JSON Schema of the answer), fields (present), equals, number (tolerance), codes (set F1, min_f1),
#   judge (free text scored 0..1 by the LLM judge, FORGE_JUDGE_BASE_URL; skipped when no judge is set).
# A task passes when its weighted score >= pass_threshold and no `critical` check failed.
"""
import yaml  # noqa
suite = {'suite': 'healthcare-v1', 'description': 'Scored agent evaluation on synthetic healthcare payer and provider workflows', 'version': 1,
         'environment': 'cpu-standard', 'pass_threshold': 0.8, 'timeout_ms': 20000, 'memory_mb': 256, 'tasks': tasks}
with open('config/eval/healthcare-v1.yaml', 'w') as f:
    f.write(header)
    yaml.safe_dump(suite, f, sort_keys=False, width=160, allow_unicode=True)
print('wrote', len(tasks), 'tasks')
