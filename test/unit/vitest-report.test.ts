// How npm test counts a vitest JSON report: failed files count even when none of their tests failed.
import { describe, expect, it } from 'vitest';
import { countReport, type VitestReport } from '../../hack/lib/vitest-report.ts';

const report = (testResults: VitestReport['testResults']): VitestReport => {
  const all = testResults.flatMap((file) => file.assertionResults);
  return {
    numPassedTests: all.filter((t) => t.status === 'passed').length,
    numFailedTests: all.filter((t) => t.status === 'failed').length,
    numPendingTests: all.filter((t) => t.status === 'pending' || t.status === 'skipped').length,
    numTodoTests: 0,
    testResults,
  };
};

describe("npm test's count of a vitest report", () => {
  it('counts tests, and a failed test once', () => {
    const counts = countReport(report([{ status: 'failed', assertionResults: [{ status: 'passed' }, { status: 'failed' }] }]));
    expect(counts).toEqual({ passed: 1, failed: 1, skipped: 0 });
  });

  it("fails a file whose beforeAll threw: vitest reports its tests skipped and only the file failed (CI once printed '0 failed' for it)", () => {
    const counts = countReport(
      report([
        { status: 'passed', assertionResults: [{ status: 'passed' }] },
        { status: 'failed', assertionResults: [{ status: 'skipped' }, { status: 'skipped' }] },
      ]),
    );
    expect(counts).toEqual({ passed: 1, failed: 1, skipped: 2 });
  });

  it('fails a file that did not load (no test at all)', () => {
    expect(countReport(report([{ status: 'failed', assertionResults: [] }]))).toEqual({ passed: 0, failed: 1, skipped: 0 });
  });

  it('skips are not failures', () => {
    expect(countReport(report([{ status: 'passed', assertionResults: [{ status: 'skipped' }, { status: 'passed' }] }]))).toEqual({
      passed: 1,
      failed: 0,
      skipped: 1,
    });
  });
});
