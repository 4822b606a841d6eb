/**
 * The flow of ../shared/ARCHITECTURE.md as a check (`npm run deps`, part of `npm test`): lower parts never
 * import higher ones, peers stay independent, and a part is entered only through its index.ts.
 *   ui <- rules <- store <- collector <- guard <- (alerts, billing, runner, eval, dashboards, accounts) <- api <- cli
 * (ui: the web pages' shared stylesheet; the API serves it.)
 */
const LAYERS = [['ui'], ['rules'], ['store'], ['collector'], ['guard'], ['alerts', 'billing', 'runner', 'eval', 'dashboards', 'accounts'], ['api'], ['cli']];
const PARTS = LAYERS.flat();

const forbidden = [];
LAYERS.forEach((layer, level) => {
  const above = LAYERS.slice(level + 1).flat();
  for (const part of layer) {
    const peers = layer.filter((p) => p !== part);
    const banned = [...above, ...peers];
    if (banned.length === 0) continue;
    forbidden.push({
      name: `${part}-imports-above-or-beside`,
      comment: `${part}/ may import only parts below it (${LAYERS.slice(0, level).flat().join(', ') || 'none'})`,
      severity: 'error',
      from: { path: `^${part}/` },
      to: { path: `^(${banned.join('|')})/` },
    });
  }
});
forbidden.push(
  {
    name: 'enter-a-part-through-its-index',
    comment: 'another part is imported through its index.ts (its public face) only',
    severity: 'error',
    from: { path: `^(${PARTS.join('|')})/` },
    to: { path: `^(${PARTS.join('|')})/`, pathNot: ['^$1/', `^(${PARTS.join('|')})/index\\.ts$`] },
  },
  { name: 'no-circular', severity: 'error', from: { path: `^(${PARTS.join('|')})/` }, to: { circular: true } },
);

module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|test|benchmarks|data)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
