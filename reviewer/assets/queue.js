// Queue filters and sorting, on the rows the server rendered (works without it too).
(() => {
  const table = document.getElementById('queue');
  if (!table) return;
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const sitting = document.getElementById('f-sitting');
  const state = document.getElementById('f-state');
  const filter = () => {
    for (const r of rows) {
      r.hidden = (sitting.value && r.dataset.sitting !== sitting.value) || (state.value && r.dataset.state !== state.value);
    }
  };
  sitting.addEventListener('change', filter);
  state.addEventListener('change', filter);
  let last = null, dir = 1;
  for (const b of table.querySelectorAll('th button')) {
    b.addEventListener('click', () => {
      const key = b.dataset.sort, numeric = !!b.dataset.numeric;
      dir = last === key ? -dir : 1; last = key;
      rows.sort((x, y) => {
        const a = x.dataset[key], c = y.dataset[key];
        return dir * (numeric ? Number(a) - Number(c) : a.localeCompare(c, 'fr'));
      });
      for (const r of rows) body.appendChild(r);
    });
  }
})();
