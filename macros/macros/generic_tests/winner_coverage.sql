{#- Every record has a winner unless none of the summary's live member champions has a valid
    score for it. Returns the records left without one. -#}
{% test winner_coverage(model, scores, key, summary_model, members) %}
    {{ return(adapter.dispatch('test_winner_coverage', 'mlsm')(model, scores, key, summary_model, members)) }}
{% endtest %}

{% macro default__test_winner_coverage(model, scores, key, summary_model, members) %}
select winners.{{ key }}
from {{ model }} as winners
where winners.summary_model = '{{ summary_model }}'
    and winners.winning_model is null
    and winners.{{ key }} in (
        select {{ key }} from {{ scores }}
        where role = 'champion'
            and model_status = 'live'
            and model_name in ({% for m in members %}'{{ m }}'{% if not loop.last %}, {% endif %}{% endfor %})
            and {{ mlsm.is_valid_score('score') }}
    )
{% endmacro %}
