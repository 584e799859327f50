document.querySelectorAll('table.lb').forEach(t=>{
  const body=t.tBodies[0];
  t.querySelectorAll('th.m').forEach(th=>{th.addEventListener('click',e=>{
    if(e.target.tagName==='A')return;
    const i=+th.dataset.col;const fixed=[...body.rows].filter(r=>r.classList.contains('oracle')||r.classList.contains('chance'));
    const rows=[...body.rows].filter(r=>!fixed.includes(r));
    const dir=th.dataset.dir==='desc'?'asc':'desc';th.dataset.dir=dir;
    rows.sort((a,b)=>{const x=a.cells[i].dataset.v,y=b.cells[i].dataset.v;const fx=parseFloat(x),fy=parseFloat(y);
      let c=(isNaN(fx)||isNaN(fy))?String(x).localeCompare(String(y)):fx-fy;return dir==='asc'?c:-c;});
    rows.concat(fixed).forEach(r=>body.appendChild(r));});});
});
document.querySelectorAll('.tools').forEach(tools=>{
  const table=tools.nextElementSibling&&tools.nextElementSibling.querySelector('table');if(!table)return;
  const q=tools.querySelector('.rowsearch');
  if(q)q.addEventListener('input',()=>{const s=q.value.trim().toLowerCase();
    [...table.tBodies[0].rows].forEach(r=>{const n=(r.dataset.system||'').toLowerCase();r.style.display=(!s||!r.dataset.system||n.includes(s))?'':'none';});});
  tools.querySelectorAll('.gtoggle').forEach(cb=>cb.addEventListener('change',()=>{
    table.querySelectorAll('[data-g="'+CSS.escape(cb.dataset.g)+'"]').forEach(c=>c.style.display=cb.checked?'':'none');}));
});
