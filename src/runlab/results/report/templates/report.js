
(function(){
  var errors = [];
  window.addEventListener('error', function(e){ errors.push(String(e.message || e)); });
  window.addEventListener('unhandledrejection', function(e){
    errors.push('unhandled rejection: ' + String(e.reason)); });
  function sortable(table){
    var heads = table.querySelectorAll('thead th');
    heads.forEach(function(th, col){
      th.addEventListener('click', function(){
        var dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
        heads.forEach(function(h){ delete h.dataset.dir; });
        th.dataset.dir = dir;
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function(a, b){
          var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
          if (x === '' && y === '') return 0;
          if (x === '') return 1;
          if (y === '') return -1;
          var nx = Number(x), ny = Number(y), c;
          if (!isNaN(nx) && !isNaN(ny)) c = nx - ny; else c = x.localeCompare(y);
          return dir === 'asc' ? c : -c;
        });
        rows.forEach(function(r){ body.appendChild(r); });
      });
    });
  }
  document.querySelectorAll('table.sortable').forEach(sortable);

  // A link to a run opens its record.
  function openRecord(){
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id && document.getElementById(id);
    if (el && el.tagName === 'DETAILS') { el.open = true; el.scrollIntoView(); }
  }
  window.addEventListener('hashchange', openRecord);
  document.addEventListener('click', function(e){
    var a = e.target.closest && e.target.closest('a[href^="#run-"]');
    var d = a && document.getElementById(a.getAttribute('href').slice(1));
    if (d) d.open = true;
  });
  openRecord();

  var figures = JSON.parse(document.getElementById('runlab-figures').textContent);
  var config = {responsive: true, displaylogo: false, displayModeBar: 'hover',
    toImageButtonOptions: {format: 'png', scale: 2}};
  var boxes = Array.prototype.slice.call(document.querySelectorAll('aside.groups input[data-g]'));
  function visibility(){
    var on = {};
    boxes.forEach(function(b){ on[b.dataset.g] = b.checked; });
    document.querySelectorAll('.runlab-plot').forEach(function(gd){
      if (!gd.data) return;
      var vis = gd.data.map(function(t){ return on[String(t.meta.g)] !== false; });
      Plotly.restyle(gd, {visible: vis});
    });
  }
  boxes.forEach(function(b){ b.addEventListener('change', visibility); });
  document.querySelectorAll('aside.groups button[data-pick]').forEach(function(btn){
    btn.addEventListener('click', function(){
      var pick = btn.dataset.pick, top = Number(btn.dataset.top || 0);
      boxes.forEach(function(b, i){
        b.checked = pick === 'all' || (pick === 'top' && i < top); });
      visibility();
    });
  });
  document.querySelectorAll('.panel .tools button[data-scale]').forEach(function(btn){
    btn.addEventListener('click', function(){
      var gd = document.getElementById(btn.dataset.plot);
      Plotly.relayout(gd, {'yaxis.type': btn.dataset.scale});
      btn.parentNode.querySelectorAll('button').forEach(function(b){
        b.classList.toggle('active', b === btn); });
    });
  });
  var jobs = figures.map(function(f){
    return Plotly.newPlot(document.getElementById(f.id), f.data, f.layout, config); });
  Promise.all(jobs).then(function(){
    var out = document.getElementById('runlab-selftest');
    var traces = 0;
    document.querySelectorAll('.runlab-plot').forEach(function(gd){
      traces += (gd.data || []).length; });
    out.textContent = JSON.stringify({done: true, panels: jobs.length, traces: traces,
      drawn: document.querySelectorAll('.runlab-plot .scatterlayer .trace').length,
      errors: errors});
  }, function(e){ errors.push(String(e));
    document.getElementById('runlab-selftest').textContent =
      JSON.stringify({done: true, panels: 0, errors: errors}); });
})();
