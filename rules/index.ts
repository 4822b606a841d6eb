export * from './money.ts';
export * from './cost-model.ts';
export * from './states.ts';
export * from './bands.ts';
export * from './engine.ts';
export * from './bands-config.ts';
export * from './scope-table.ts';
