{#- Fails with the rows of `model` matching `condition`: for models whose rows are findings
    (mlsm's input_drift and score_checks), the finding rows themselves. -#}
{% test flagged(model, condition) %}
    {{ return(adapter.dispatch('test_flagged', 'mlsm')(model, condition)) }}
{% endtest %}

{% macro default__test_flagged(model, condition) %}
select * from {{ model }}
where {{ condition }}
{% endmacro %}
